-- Graded relevance labels on 0..3 (ESCI-style whole grades, or a mean of raters' scores with its fraction);
-- the latest grade for a (query, item) pair wins.
with source as (
    select * from {{ source('landing', 'judgments') }}
),

ranked as (
    select
        query_id,
        scrub(query_text) as query_text,
        item_id,
        cast(grade as double) as grade,
        cast(dt as date) as judged_on,
        row_number() over (partition by query_id, item_id order by dt desc, grade desc) as version_rank
    from source
),

final as (
    select query_id, query_text, item_id, grade, judged_on from ranked where version_rank = 1
)

select * from final
