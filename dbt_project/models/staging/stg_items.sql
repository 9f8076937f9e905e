-- One row per item, text cleaned (HTML, CSS, Unicode), the newest landing winning when an item is
-- landed more than once. Rows that cannot serve (no title left after cleaning) carry a
-- reject_reason and go to the quarantine mart instead of the catalog.
-- Duplicate listings: the same product listed again under another id (same cleaned title, brand
-- and category, case-insensitive) points at the first listing (duplicate_of); marts count its
-- events, reviews and judgments for that first listing (int_item_ids) and leave it out of the catalog.
with source as (
    select * from {{ source('landing', 'items') }}
),

cleaned as (
    select
        item_id,
        clean_text(title) as title,
        coalesce(clean_text(description), '') as description,
        nullif(clean_text(brand), '') as brand,
        coalesce(nullif(clean_text(category_path), ''), 'Uncategorised') as category_path,
        attributes,
        -- Missing-value rule: a missing or non-positive price stays null (price_missing); marts
        -- impute the category median so the item still ranks.
        case when price > 0 then cast(price as double) end as price,
        upper(coalesce(currency, 'EUR')) as currency,
        image_url,
        case when rating between 1 and 5 then cast(rating as double) end as rating,
        coalesce(cast(review_count as bigint), 0) as review_count,
        cast(created_at as timestamp) as created_at,
        cast(dt as date) as landed_on,
        row_number() over (partition by item_id order by dt desc, length(coalesce(description, '')) desc, filename) as version_rank
    from source
),

flagged as (
    select
        {{ item_listing_columns() }},
        split_part(category_path, ' > ', 1) as category,
        price is null as price_missing,
        case
            when item_id is null then 'missing item_id'
            when title is null or title = '' then 'title empty after cleaning'
        end as reject_reason
    from cleaned
    where version_rank = 1
),

category_prices as (
    select category, median(price) as category_median_price from flagged group by category
),

listings as (
    select
        *,
        case when reject_reason is null then first_value(item_id) over (
            partition by reject_reason is null, lower(title), lower(coalesce(brand, '')), lower(category_path)
            order by created_at nulls last, item_id
        ) end as first_listing
    from flagged
),

final as (
    select
        {{ item_listing_columns('f') }},
        f.category,
        f.price_missing,
        f.reject_reason,
        case when f.first_listing <> f.item_id then f.first_listing end as duplicate_of,
        -- Outlier rule: more than 20x from the category median is flagged (kept: luxury exists).
        coalesce(f.price > 20 * c.category_median_price or f.price < c.category_median_price / 20, false) as price_outlier,
        c.category_median_price
    from listings as f
    left join category_prices as c using (category)
)

select * from final
