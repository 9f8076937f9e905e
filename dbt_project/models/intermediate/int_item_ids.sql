-- Every servable item id and the catalog id it counts for: itself, or the first listing of the
-- same product when it is a duplicate listing (see stg_items).
with items as (
    select * from {{ ref('stg_items') }}
),

final as (
    select item_id, coalesce(duplicate_of, item_id) as catalog_item_id
    from items
    where reject_reason is null
)

select * from final
