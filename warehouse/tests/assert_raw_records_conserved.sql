-- Every raw record (header lines aside) lands in exactly one of stg_impressions / quarantine_impressions.
with raw_records as (

    select count(*) as n
    from {{ source('raw', 'impressions_csv') }}
    where not coalesce(c0 = 'user_id' and c1 = 'item_id', false)

),

staged as (

    select count(*) as n from {{ ref('stg_impressions') }}

),

quarantined as (

    select count(*) as n from {{ ref('quarantine_impressions') }}

)

select raw_records.n as raw_records, staged.n as staged, quarantined.n as quarantined
from raw_records, staged, quarantined
where raw_records.n != staged.n + quarantined.n
