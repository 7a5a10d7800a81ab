{#- For every [clicks, impressions] pair of columns: both present and clicks <= impressions, row by row. -#}
{% test clicks_not_above_impressions(model, pairs) %}
select *
from {{ model }}
where
{%- for clk, imp in pairs %}
    {{ 'or ' if not loop.first }}{{ clk }} is null or {{ imp }} is null or {{ clk }} > {{ imp }}
{%- endfor %}
{% endtest %}
