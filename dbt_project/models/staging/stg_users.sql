-- User ids leave staging only as keyed hashes (see shoploop.warehouse.privacy).
with source as (
    select * from {{ source('landing', 'users') }}
),

ranked as (
    select
        pseudonymise(user_id) as user_key,
        cast(signup_ts as timestamp) as signup_ts,
        attributes,
        row_number() over (partition by user_id order by dt desc, signup_ts desc) as version_rank
    from source
    where user_id is not null
),

final as (
    select user_key, signup_ts, attributes from ranked where version_rank = 1
)

select * from final
