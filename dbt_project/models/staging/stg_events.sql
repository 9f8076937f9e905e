-- Deduplicated on event_id (the idempotency key): a replayed or re-sent event counts once. User
-- ids are pseudonymised and query text scrubbed of emails, phones and card numbers here, before
-- any mart. Rows that break a rule keep a reject_reason (see int_events_valid and quarantine).
-- Incremental: events are append-only, so a build reads only landing files it has not seen; the
-- post-hook drops rows whose file is gone (a reloaded day lands under a new, content-derived name).
{{ config(
    materialized='incremental',
    unique_key='event_id',
    incremental_strategy='delete+insert',
    post_hook="delete from {{ this }} where source_file not in (select file from glob('"
              ~ env_var('SHOPLOOP_HOME') ~ "/landing/events/dt=*/*.parquet'))",
) }}

with source as (
    select * from {{ source('landing', 'events') }}
    {% if is_incremental() %}
    {% if 'source_file' not in (adapter.get_columns_in_relation(this) | map(attribute='name') | list) %}
    {{ exceptions.raise_compiler_error("stg_events was built before incremental builds: run `shoploop transform --full-refresh` once") }}
    {% endif %}
    where filename not in (select distinct source_file from {{ this }})
    {% endif %}
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
        row_number() over (partition by event_id order by ts) as copy_rank
    from source
),

final as (
    select
        t.* exclude (copy_rank),
        case
            when t.event_id is null then 'missing event_id'
            when t.ts is null then 'missing ts'
            when t.event_type not in ('impression', 'click', 'add_to_cart', 'purchase', 'view') then 'unknown event_type'
            when i.item_id is null then 'unknown item_id'
            when t.position is not null and t.position < 1 then 'position below 1'
        end as reject_reason
    from typed as t
    left join items as i using (item_id)
    where t.copy_rank = 1
)

select * from final
