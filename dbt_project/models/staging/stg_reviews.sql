with source as (
    select * from {{ source('landing', 'reviews') }}
),

ranked as (
    select
        review_id,
        item_id,
        pseudonymise(user_id) as user_key,
        cast(rating as integer) as rating,
        trim(text) as review_text,
        cast(ts as timestamp) as ts,
        row_number() over (partition by review_id order by dt desc) as version_rank
    from source
    where review_id is not null
),

final as (
    select * exclude (version_rank) from ranked where version_rank = 1
)

select * from final
