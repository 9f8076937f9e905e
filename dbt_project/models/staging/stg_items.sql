-- One row per item: the newest landed version wins when an item is listed more than once.
with source as (
    select * from {{ source('landing', 'items') }}
),

ranked as (
    select
        item_id,
        trim(title) as title,
        trim(description) as description,
        trim(brand) as brand,
        category_path,
        split_part(category_path, ' > ', 1) as category,
        attributes,
        cast(price as double) as price,
        upper(currency) as currency,
        cast(rating as double) as rating,
        cast(review_count as bigint) as review_count,
        cast(created_at as timestamp) as created_at,
        cast(dt as date) as landed_on,
        row_number() over (partition by item_id order by dt desc) as version_rank
    from source
    where item_id is not null
),

final as (
    select * exclude (version_rank) from ranked where version_rank = 1
)

select * from final
