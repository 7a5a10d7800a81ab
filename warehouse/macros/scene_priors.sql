{#- A scene's prior from its impressions and clicks before the day: its click rate, or var ctr_prior_default without history. -#}
{% macro scene_prior(imp, clk) -%}
case
            when {{ imp }} > 0 then {{ clk }} / {{ imp }}
            else cast({{ var('ctr_prior_default') }} as double)
        end
{%- endmacro %}

{#- Smoothed CTR, pulled toward the scene prior: (clicks + m * prior) / (impressions + m). -#}
{% macro smoothed_ctr(clk, imp, prior) -%}
  ({{ clk }} + {{ var('ctr_smoothing_weight') }} * {{ prior }}) / ({{ imp }} + {{ var('ctr_smoothing_weight') }})
{%- endmacro %}
