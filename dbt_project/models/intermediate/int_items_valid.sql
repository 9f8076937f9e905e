-- The catalog every mart reads: items that passed staging's rules.
with items as (
    select * from {{ ref('stg_items') }}
),

final as (
    select * exclude (reject_reason) from items where reject_reason is null
)

select * from final
