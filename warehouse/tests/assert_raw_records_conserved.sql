-- Every raw record (header lines aside) of every file parsed in this run lands in exactly one of
-- stg_impressions / quarantine_impressions, file by file (counts: macros/file_record_counts.sql).
with counts as (

    {{ file_record_counts() | indent(4) }}

)

select
    source_file,
    records as raw_records,
    staged,
    quarantined
from counts
where records != staged + quarantined
