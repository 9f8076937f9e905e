-- Daily point-in-time snapshots of a shopper's behaviour, keyed by the pseudonymised user_key.
with events as (
    select * from {{ ref('int_events_valid') }} where user_key is not null
),

days as (
    select {{ day_series('min_day', 'max_day') }}
    from (select min(ts)::date as min_day, max(ts)::date as max_day from events) as span
),

users as (
    select distinct user_key from events
),

cumulative as (
    select
        u.user_key,
        d.day,
        count(distinct e.session_id) as sessions,
        count(*) filter (where e.event_type = 'click') as clicks,
        count(*) filter (where e.event_type = 'purchase') as purchases,
        avg(e.price_seen) filter (where e.event_type = 'click') as mean_clicked_price
    from users as u
    cross join days as d
    join events as e on e.user_key = u.user_key and e.ts::date <= d.day
    group by all
),

final as (
    select
        user_key,
        cast(day + interval 1 day as timestamp) as event_timestamp,
        sessions,
        clicks,
        purchases,
        coalesce(ln(mean_clicked_price), 0.0) as log_mean_clicked_price
    from cumulative
)

select * from final
