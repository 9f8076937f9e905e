-- Deduplicated on event_id (the idempotency key): a replayed or re-sent event counts once.
with source as (
    select * from {{ source('landing', 'events') }}
),

typed as (
    select
        event_id,
        cast(ts as timestamp) as ts,
        session_id,
        pseudonymise(user_id) as user_key,
        lower(event_type) as event_type,
        item_id,
        query_id,
        query_text,
        cast(position as integer) as position,
        surface,
        model_version,
        cast(price_seen as double) as price_seen,
        row_number() over (partition by event_id order by ts) as copy_rank
    from source
    where event_id is not null
),

final as (
    select * exclude (copy_rank) from typed where copy_rank = 1
)

select * from final
