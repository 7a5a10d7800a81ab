{#- Rates: never null, always within [0, 1]. -#}
{% test unit_interval(model, columns) %}
select *
from {{ model }}
where
{%- for c in columns %}
    {{ 'or ' if not loop.first }}{{ c }} is null or {{ c }} < 0 or {{ c }} > 1
{%- endfor %}
{% endtest %}
