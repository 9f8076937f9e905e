-- Reviews, one row per review_id (the newest landing wins), user ids pseudonymised.
-- Incremental (reviews are append-only): see macros/landing_increments.sql.
{{ config(**append_only_staging('review_id', 'reviews')) }}

with source as (
    select * from {{ source('landing', 'reviews') }}
    {{ only_unseen_landing_files() }}
),

ranked as (
    select
        review_id,
        item_id,
        pseudonymise(user_id) as user_key,
        cast(rating as integer) as rating,
        trim(text) as review_text,
        cast(ts as timestamp) as ts,
        filename as source_file,
        row_number() over (partition by review_id order by dt desc, filename desc) as version_rank
    from source
    where review_id is not null
),

final as (
    select review_id, item_id, user_key, rating, review_text, ts, source_file
    from ranked
    where version_rank = 1
)

select * from final
