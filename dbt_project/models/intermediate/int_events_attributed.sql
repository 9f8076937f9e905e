{{ config(materialized='table') }}
-- Every event that passed staging's rules, with why it cannot be attributed (null when it can):
-- search engagement without an impression of the item in its session, or a repeated click.
with events as (
    select
        e.event_id,
        e.ts,
        e.session_id,
        e.user_key,
        e.event_type,
        e.query_id,
        e.query_text,
        e.position,
        e.surface,
        e.model_version,
        e.price_seen,
        e.source_file,
        ids.catalog_item_id as item_id
    from {{ ref('stg_events') }} as e
    join {{ ref('int_item_ids') }} as ids using (item_id)
    where e.reject_reason is null
),

shown as (
    select distinct session_id, item_id, surface from events where event_type = 'impression'
),

final as (
    select
        e.*,
        case
            when e.surface = 'search' and e.event_type <> 'impression' and s.session_id is null
                then 'search ' || e.event_type || ' without an impression in its session'
            when e.event_type = 'click'
                and row_number() over (partition by e.session_id, e.item_id, e.surface, e.event_type order by e.ts, e.event_id) > 1
                then 'repeated click in a session'
        end as attribution_issue
    from events as e
    left join shown as s using (session_id, item_id, surface)
)

select * from final
