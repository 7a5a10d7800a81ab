-- Every raw record (header lines aside) lands in exactly one of stg_impressions / quarantine_impressions.
-- The records are counted in base_raw_impressions, the CSV source stored as is (one row per CSV
-- record), so the CSV is not parsed again.
with raw_records as (

    select count(*) as n
    from {{ ref('base_raw_impressions') }}
    where not is_header

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
