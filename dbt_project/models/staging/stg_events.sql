-- Deduplicated on event_id (the idempotency key): a replayed or re-sent event counts once. User
-- ids are pseudonymised and query text scrubbed of emails, phones and card numbers here, before
-- any mart. Rows that break a rule keep a reject_reason (see int_events_valid and quarantine).
-- Incremental (events are append-only): see macros/landing_increments.sql.
{{ config(**append_only_staging('event_id', 'events')) }}

with source as (
    select * from {{ source('landing', 'events') }}
    {{ only_unseen_landing_files() }}
),

items as (
    select item_id from {{ ref('stg_items') }} where reject_reason is null
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
        scrub(query_text) as query_text,
        cast(position as integer) as position,
        surface,
        model_version,
        cast(price_seen as double) as price_seen,
        filename as source_file,
        row_number() over (partition by event_id order by ts, filename) as copy_rank
    from source
),

final as (
    select
        t.event_id,
        t.ts,
        t.session_id,
        t.user_key,
        t.event_type,
        t.item_id,
        t.query_id,
        t.query_text,
        t.position,
        t.surface,
        t.model_version,
        t.price_seen,
        t.source_file,
        case
            when t.event_id is null then 'missing event_id'
            when t.ts is null then 'missing ts'
            when t.ts < timestamp '{{ var("earliest_event_ts") }}' or t.ts > current_timestamp::timestamp + interval 1 day
                then 'ts out of range'
            when t.event_type not in ('impression', 'click', 'add_to_cart', 'purchase', 'view') then 'unknown event_type'
            when i.item_id is null then 'unknown item_id'
            when t.position is not null and t.position < 1 then 'position below 1'
        end as reject_reason
    from typed as t
    left join items as i using (item_id)
    where t.copy_rank = 1
)

select * from final
