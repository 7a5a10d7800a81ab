{#- Point in time: the last day that fed a feature is strictly before the row's date (or null: no history). -#}
{% test before_date(model, columns, date_column='date') %}
select *
from {{ model }}
where
{%- for c in columns %}
    {{ 'or ' if not loop.first }}{{ c }} >= {{ date_column }}
{%- endfor %}
{% endtest %}
