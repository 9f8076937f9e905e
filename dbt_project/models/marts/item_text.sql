-- The text the encoder reads for an item: title, brand, category, description and a review summary.
with items as (
    select * from {{ ref('int_items_valid') }}
),

reviews as (
    select item_id, {{ ordered_string_agg('review_text', "' '", 'ts desc, review_id') }} as review_summary
    from {{ ref('int_reviews_valid') }}
    group by item_id
),

final as (
    select
        i.item_id,
        i.title,
        i.brand,
        i.category_path,
        i.price,
        i.created_at,
        concat_ws(' | ', i.title, i.brand, i.category_path, i.description, coalesce(r.review_summary, '')) as item_text
    from items as i
    left join reviews as r using (item_id)
)

select * from final
