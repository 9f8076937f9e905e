-- Real-time counters, as the event stream knows them: per item, the impressions, clicks and
-- purchases of the trailing 24 hours, snapshotted at the top of every hour in which that window
-- changes (an hour after events arrive, and again when they age out). The service pushes the same
-- counters to Feast's online store as feedback arrives (shoploop.features.counters); this mart is their
-- offline history, so a training row sees the counters as they were at its moment, never after.
with events as (
    select item_id, ts, event_type
    from {{ ref('int_events_valid') }}
    where surface = 'search' and event_type in ('impression', 'click', 'purchase')
),

hourly as (
    select
        item_id,
        date_trunc('hour', ts) as hour,
        count(*) filter (where event_type = 'impression') as impressions,
        count(*) filter (where event_type = 'click') as clicks,
        count(*) filter (where event_type = 'purchase') as purchases
    from events
    group by all
),

-- The window [t - 24 h, t) changes when an hour's events enter it (t = hour + 1 h) or leave it
-- (t = hour + 25 h).
snapshots as (
    select distinct item_id, hour + interval 1 hour as event_timestamp from hourly
    union
    select distinct item_id, hour + interval 25 hour as event_timestamp from hourly
),

final as (
    select
        s.item_id,
        cast(s.event_timestamp as timestamp) as event_timestamp,
        cast(coalesce(sum(h.impressions), 0) as bigint) as impressions_24h,
        cast(coalesce(sum(h.clicks), 0) as bigint) as clicks_24h,
        cast(coalesce(sum(h.purchases), 0) as bigint) as purchases_24h
    from snapshots as s
    left join hourly as h
        on h.item_id = s.item_id
        and h.hour >= s.event_timestamp - interval 24 hour
        and h.hour < s.event_timestamp
    group by all
)

select * from final
