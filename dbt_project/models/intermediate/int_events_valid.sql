-- The events every mart reads: those that passed staging's rules and can be attributed, with a
-- duplicate listing's events counted for the product's first listing. Search engagement (a click,
-- a view, an add to cart, a purchase) counts only when its session was shown the item, and a
-- session's click on an item counts once: a client that loses its impression logging, a bot, or a
-- load test would otherwise push clicks above impressions. Those rows go to the quarantine mart
-- (int_events_attributed holds every event with its reason).
select
    event_id,
    ts,
    session_id,
    user_key,
    event_type,
    query_id,
    query_text,
    position,
    surface,
    model_version,
    price_seen,
    source_file,
    item_id
from {{ ref('int_events_attributed') }}
where attribution_issue is null
