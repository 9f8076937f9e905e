-- Every row kept out of the marts, with its reason: adapters' rejections from the landing zone
-- (the raw record stays there, in the raw zone) and staging's rule violations.
with landed as (
    select
        source,
        table_name,
        reason,
        cast(null as string) as record_key,
        cast(dt as date) as landed_on
    from {{ source('landing', 'quarantine') }}
),

items as (
    select 'warehouse' as source, 'items' as table_name, reject_reason as reason, item_id as record_key, landed_on
    from {{ ref('stg_items') }}
    where reject_reason is not null
),

duplicate_listings as (
    select 'warehouse' as source, 'items' as table_name, 'duplicate listing' as reason,
        item_id as record_key, landed_on
    from {{ ref('stg_items') }}
    where duplicate_of is not null
),

events as (
    select 'warehouse' as source, 'events' as table_name, reject_reason as reason, event_id as record_key,
        cast(ts as date) as landed_on
    from {{ ref('stg_events') }}
    where reject_reason is not null
),

unattributed as (
    select 'warehouse' as source, 'events' as table_name, attribution_issue as reason, event_id as record_key,
        cast(ts as date) as landed_on
    from {{ ref('int_events_attributed') }}
    where attribution_issue is not null
),

final as (
    select * from landed
    union all
    select * from items
    union all
    select * from duplicate_listings
    union all
    select * from events
    union all
    select * from unattributed
)

select * from final
