-- The events every mart reads: those that passed staging's rules.
with events as (
    select * from {{ ref('stg_events') }}
),

final as (
    select * exclude (reject_reason) from events where reject_reason is null
)

select * from final
