-- What each (pseudonymised) shopper engaged with, in order: the recommender's input.
with events as (
    select * from {{ ref('int_events_valid') }}
    where event_type in ('click', 'add_to_cart', 'purchase')
      and user_key is not null  -- anonymous sessions have no history to keep
),

final as (
    select
        user_key,
        item_id,
        min(ts) as first_engaged_at,
        max(ts) as last_engaged_at,
        count(*) filter (where event_type = 'click') as clicks,
        count(*) filter (where event_type = 'add_to_cart') as add_to_carts,
        count(*) filter (where event_type = 'purchase') as purchases
    from events
    group by user_key, item_id
)

select * from final
