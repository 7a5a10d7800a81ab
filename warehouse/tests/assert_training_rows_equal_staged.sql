-- training_samples holds exactly the staged impressions: same ids, each once, on every day this
-- run rebuilt (every day on a full build).
{%- set plan = build_plan() %}
{%- set rebuilt = in_list('date', plan.rebuilt, plan.full, dates=true) %}

with staged as (

    select impression_id from {{ ref('stg_impressions') }}
    where {{ rebuilt }}

),

training as (

    select impression_id, count(*) as n
    from {{ ref('training_samples') }}
    where {{ rebuilt }}
    group by impression_id

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
