{#- The listed columns identify a row: never null, and no two rows share them (one query, not one per column). -#}
{% test primary_key(model, columns) %}
select {{ columns | join(', ') }}, count(*) as n_rows
from {{ model }}
group by {{ columns | join(', ') }}
having count(*) > 1
    {%- for c in columns %}
    or {{ c }} is null
    {%- endfor %}
{% endtest %}
