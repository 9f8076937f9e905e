-- (query, item) pairs with labels: graded judgments, and logged impressions with their click and
-- position (the position is what bias correction needs). event_timestamp is when the label was
-- known, so Feast joins the features of that moment.
with judgments as (
    -- A duplicate listing's judgment counts for the product's first listing (the best grade wins).
    select j.query_id, min(j.query_text) as query_text, ids.catalog_item_id as item_id, max(j.grade) as grade
    from {{ ref('stg_judgments') }} as j
    join {{ ref('int_item_ids') }} as ids using (item_id)
    group by j.query_id, ids.catalog_item_id
),

events as (
    select * from {{ ref('int_events_valid') }} where surface = 'search'
),

-- Judgments are known as of the end of the last logged day (or, with no logs, of the day the newest
-- item arrived: the same moment item_features has its last snapshot for).
as_of as (
    select cast(coalesce(max(ts)::date, (select max(created_at)::date from {{ ref('int_items_valid') }}))
                + interval 1 day as timestamp) as ts
    from events
),

judged as (
    select
        j.query_id,
        j.query_text,
        j.item_id,
        'judgment' as label_source,
        cast(null as string) as session_id,
        j.grade,
        cast(null as integer) as position,
        cast(null as boolean) as clicked,
        cast(null as boolean) as carted,
        cast(null as boolean) as purchased,
        cast(null as double) as price_seen,
        a.ts as event_timestamp
    from judgments as j
    cross join as_of as a
),

logged as (
    select
        query_id,
        min(query_text) as query_text,
        item_id,
        'click_log' as label_source,
        -- The session groups one result page: a skip above a click there was examined.
        session_id,
        cast(null as double) as grade,
        min(position) filter (where event_type = 'impression') as position,
        bool_or(event_type = 'click') as clicked,
        -- What followed the click: the graded implicit label (purchase > add to cart > click > skip).
        bool_or(event_type = 'add_to_cart') as carted,
        bool_or(event_type = 'purchase') as purchased,
        -- The price the shopper saw (the monitor watches it: a price moves before the catalog's snapshot does).
        avg(price_seen) filter (where event_type = 'impression') as price_seen,
        min(ts) as event_timestamp
    from events
    group by session_id, query_id, item_id
    having count(*) filter (where event_type = 'impression') > 0
),

final as (
    select * from judged
    union all
    select * from logged
)

select * from final
