-- The catalog every mart reads: items that passed staging's rules, each product listed once.
with items as (
    select * from {{ ref('stg_items') }}
),

final as (
    select
        {{ item_listing_columns() }},
        category,
        price_missing,
        price_outlier,
        category_median_price
    from items
    where reject_reason is null and duplicate_of is null
)

select * from final
