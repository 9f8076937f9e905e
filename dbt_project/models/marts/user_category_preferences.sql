-- Each shopper's engagement by category (clicks 1, carts 2, purchases 3), as shares summing to 1:
-- the category preferences personalisation reads.
with events as (
    select * from {{ ref('int_events_valid') }}
    where user_key is not null and event_type in ('click', 'add_to_cart', 'purchase')
),

items as (
    select item_id, category from {{ ref('int_items_valid') }}
),

weighted as (
    select
        e.user_key,
        i.category,
        sum(case e.event_type when 'purchase' then 3 when 'add_to_cart' then 2 else 1 end) as engagement
    from events as e
    join items as i using (item_id)
    group by all
),

final as (
    select
        user_key,
        category,
        engagement,
        engagement / sum(engagement) over (partition by user_key) as share
    from weighted
)

select * from final
