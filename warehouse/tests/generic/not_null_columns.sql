{#- None of the listed columns is null, in one query. -#}
{% test not_null_columns(model, columns) %}
select *
from {{ model }}
where
{%- for c in columns %}
    {{ 'or ' if not loop.first }}{{ c }} is null
{%- endfor %}
{% endtest %}
