-- Daily point-in-time snapshots: each row holds what was known about an item at the end of a day,
-- so Feast's historical join never leaks tomorrow's clicks into today's training row.
with items as (
    select
        *,
        -- Price band 1 (cheapest fifth) .. 5 within the item's category; 3 when the price is unknown.
        case when price is null then 3 else ntile(5) over (partition by category, price is null order by price, item_id) end
            as price_band
    from {{ ref('int_items_valid') }}
),

events as (
    select * from {{ ref('int_events_valid') }} where surface = 'search'
),

reviews as (
    select item_id, count(*) as n_reviews_text, avg(rating) as review_rating_mean
    from {{ ref('int_reviews_valid') }}
    group by item_id
),

-- Every day with search traffic; a shop with no logs yet (a catalog and judgments only) gets one
-- snapshot, on the day its newest item arrived, so its items still have features.
span as (
    select
        coalesce(min(ts)::date, (select max(created_at)::date from items)) as first_day,
        coalesce(max(ts)::date, (select max(created_at)::date from items)) as last_day
    from events
),

days as (
    select {{ day_series('first_day', 'last_day') }}
    from span
),

daily_counts as (
    select
        item_id,
        ts::date as day,
        count(*) filter (where event_type = 'impression') as impressions,
        count(*) filter (where event_type = 'click') as clicks,
        count(*) filter (where event_type = 'add_to_cart') as add_to_carts,
        count(*) filter (where event_type = 'purchase') as purchases
    from events
    group by all
),

cumulative as (
    select
        i.item_id,
        d.day,
        cast(coalesce(sum(c.impressions), 0) as bigint) as impressions,
        cast(coalesce(sum(c.clicks), 0) as bigint) as clicks,
        cast(coalesce(sum(c.add_to_carts), 0) as bigint) as add_to_carts,
        cast(coalesce(sum(c.purchases), 0) as bigint) as purchases
    from items as i
    cross join days as d
    left join daily_counts as c on c.item_id = i.item_id and c.day <= d.day
    where i.created_at < d.day + interval 1 day
    group by all
),

prior as (
    select
        sum(clicks)::double / greatest(sum(impressions), 1) as ctr,
        sum(purchases)::double / greatest(sum(clicks), 1) as cvr
    from daily_counts
),

final as (
    select
        c.item_id,
        cast(c.day + interval 1 day as timestamp) as event_timestamp,
        -- Missing-value rule: an unknown price ranks at its category's median, an unknown rating at 3.
        coalesce(i.price, i.category_median_price) as price,
        ln(coalesce(i.price, i.category_median_price, 1.0)) as log_price,
        coalesce(i.rating, 3.0) as rating,
        i.price_band,
        i.review_count,
        ln(1 + i.review_count) as log_review_count,
        coalesce(r.review_rating_mean, i.rating, 3.0) as review_rating_mean,
        c.impressions,
        c.clicks,
        c.purchases,
        -- Bayesian smoothing: an item with few impressions stays near the catalog's mean CTR.
        -- Rounded as a decimal: the engines round a double's halves differently (DuckDB 0.2140625 -> 0.214062,
        -- Spark -> 0.214063), a decimal's alike.
        cast(round(cast((c.clicks + p.ctr * {{ var('ctr_prior_impressions') }}) / (c.impressions + {{ var('ctr_prior_impressions') }})
            as decimal(18, 12)), 6) as double) as ctr_smoothed,
        cast(round(cast((c.purchases + p.cvr * 10) / (c.clicks + 10) as decimal(18, 12)), 6) as double) as cvr_smoothed,
        ln(1 + c.clicks + 5 * c.purchases) as popularity,
        {{ days_between('i.created_at', 'c.day + interval 1 day') }} as age_days
    from cumulative as c
    join items as i using (item_id)
    left join reviews as r using (item_id)
    cross join prior as p
)

select * from final
