-- training_samples holds exactly the staged impressions: same ids, each once.
with staged as (

    select impression_id from {{ ref('stg_impressions') }}

),

training as (

    select impression_id, count(*) as n from {{ ref('training_samples') }} group by impression_id

)

select
    coalesce(staged.impression_id, training.impression_id) as impression_id,
    training.n as training_rows
from staged
full outer join training
    on staged.impression_id = training.impression_id
where staged.impression_id is null
    or training.impression_id is null
    or training.n != 1
