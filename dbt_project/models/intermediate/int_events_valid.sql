-- The events every mart reads: those that passed staging's rules, with a duplicate listing's
-- events counted for the product's first listing.
with events as (
    select * from {{ ref('stg_events') }}
),

ids as (
    select * from {{ ref('int_item_ids') }}
),

final as (
    select e.* exclude (reject_reason, item_id), ids.catalog_item_id as item_id
    from events as e
    join ids using (item_id)
    where e.reject_reason is null
)

select * from final
