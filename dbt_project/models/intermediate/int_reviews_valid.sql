-- The reviews every mart reads: those of servable items, a duplicate listing's counted for the
-- product's first listing.
with reviews as (
    select * from {{ ref('stg_reviews') }}
),

ids as (
    select * from {{ ref('int_item_ids') }}
),

final as (
    select r.review_id, r.user_key, r.rating, r.review_text, r.ts, r.source_file, ids.catalog_item_id as item_id
    from reviews as r
    join ids using (item_id)
)

select * from final
