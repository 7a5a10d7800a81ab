{#-
  The history columns of a training_samples row, shared by training_samples and the serving
  snapshots so that a scoring service fills a row by lookups only. Two steps:

  history_defaults(side, alias): the side's features from the joined feature row `alias`, 0 (and
    *_has_history = 0, *_last_hist_date null) where the row has no history, i.e. no feature row;
  history_columns(side, prior): the side's columns in table order, with the smoothed CTRs pulled
    toward `prior`, the scene prior of the row's scene and day.

  side: 'u' (user), 'i' (item) or 'ui' (the pair, no CTRs).
-#}
{% macro history_counts(side) -%}
  {%- if side == 'ui' -%}{{ return(['ui_imp_hist', 'ui_clk_hist', 'ui_has_history']) }}{%- endif -%}
  {%- set names = [side ~ '_imp_7d', side ~ '_clk_7d', side ~ '_imp_cum', side ~ '_clk_cum'] -%}
  {%- for s in scenes() -%}{%- do names.append(side ~ '_imp_cum_s' ~ s) -%}{%- do names.append(side ~ '_clk_cum_s' ~ s) -%}{%- endfor -%}
  {{- return(names + [side ~ '_days_since_first', side ~ '_has_history']) -}}
{%- endmacro %}

{% macro history_defaults(side, alias) -%}
  {%- for c in history_counts(side) %}
  coalesce({{ alias }}.{{ c }}, 0) as {{ c }},
  {%- endfor %}
  {%- if side != 'ui' %}
  coalesce({{ alias }}.{{ side }}_ctr_7d, 0.0) as {{ side }}_ctr_7d,
  coalesce({{ alias }}.{{ side }}_ctr_cum, 0.0) as {{ side }}_ctr_cum,
  {%- endif %}
  {{ alias }}.{{ side }}_last_hist_date
{%- endmacro %}

{% macro history_columns(side, prior) -%}
  {%- if side == 'ui' -%}
  ui_imp_hist,
  ui_clk_hist,
  ui_has_history
  {%- else -%}
  {%- set p = side -%}
  {{ p }}_imp_7d,
  {{ p }}_clk_7d,
  cast({{ p }}_ctr_7d as double) as {{ p }}_ctr_7d,
  {{ smoothed_ctr(p ~ '_clk_7d', p ~ '_imp_7d', prior) }} as {{ p }}_ctr_7d_smooth,
  {{ p }}_imp_cum,
  {{ p }}_clk_cum,
  cast({{ p }}_ctr_cum as double) as {{ p }}_ctr_cum,
  {{ smoothed_ctr(p ~ '_clk_cum', p ~ '_imp_cum', prior) }} as {{ p }}_ctr_cum_smooth,
  {%- for s in scenes() %}
  {{ p }}_imp_cum_s{{ s }},
  {%- endfor %}
  {%- for s in scenes() %}
  {{ p }}_clk_cum_s{{ s }},
  {%- endfor %}
  {{ p }}_days_since_first,
  {{ p }}_has_history
  {%- endif -%}
{%- endmacro %}
