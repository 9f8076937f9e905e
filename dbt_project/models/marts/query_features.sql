-- What the shop knows about each query from its logs: how often it is searched, how often it leads
-- to a click or a purchase, and how deep shoppers look. Query text is already scrubbed in staging.
with events as (
    select * from {{ ref('int_events_valid') }} where surface = 'search' and query_id is not null
),

final as (
    select
        query_id,
        min(query_text) as query_text,  -- one text per query id, the same on every engine
        count(distinct session_id) as searches,
        count(*) filter (where event_type = 'impression') as impressions,
        count(*) filter (where event_type = 'click') as clicks,
        count(*) filter (where event_type = 'purchase') as purchases,
        count(distinct item_id) filter (where event_type = 'click') as distinct_clicked_items,
        avg(position) filter (where event_type = 'click') as mean_click_position,
        -- Share of searches that got at least one click (a query the catalog answers).
        count(distinct session_id) filter (where event_type = 'click')::double
            / count(distinct session_id) as click_rate,
        min(ts) as first_seen,
        max(ts) as last_seen
    from events
    group by query_id
)

select * from final
