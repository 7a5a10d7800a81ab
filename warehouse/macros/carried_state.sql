{#-
  The state models (int_*_state) hold each key's totals before rebuild_from. They carry the previous
  serving snapshot forward (its totals as of its day) and add the daily rows from that day on, when
  nothing before the snapshot's day is rebuilt; otherwise (a late or re-delivered day, a first or
  full build) they sum the daily rows before rebuild_from.
-#}

{#-
  What a state model sums: `snapshot`, the previous snapshot when nothing before its day is rebuilt
  (else none), plus the daily rows of days `since` (its day; none: from the first day) to before
  `until` (rebuild_from); `alone`: no such day (the daily run after the snapshot's last day), the
  state is the snapshot's rows as they are.
-#}
{% macro carried_snapshot(snapshot_model, where='true') -%}
  {%- set plan = build_plan() -%}
  {%- if plan.nothing_new -%}
    {{- return({'snapshot': none, 'since': none, 'until': none, 'alone': false}) -}}
  {%- endif -%}
  {%- set snapshot = previous_relation(snapshot_model) -%}
  {%- set as_of = snapshot_date(snapshot, where) -%}
  {%- if as_of is not none and plan.rebuild_from is not none and plan.rebuild_from >= as_of -%}
    {{- return({'snapshot': snapshot, 'since': as_of, 'until': plan.rebuild_from,
                'alone': as_of == plan.rebuild_from}) -}}
  {%- endif -%}
  {{- return({'snapshot': none, 'since': none, 'until': plan.rebuild_from, 'alone': false}) -}}
{%- endmacro %}

{#- The as-of day of a previous snapshot ('YYYY-MM-DD'), or none when there is none or it is empty. -#}
{% macro snapshot_date(relation, where='true') -%}
  {%- if not execute or relation is none -%}{{ return(none) }}{%- endif -%}
  {%- set rows = run_query('select cast(max(date) as string) from ' ~ relation ~ ' where ' ~ where).rows -%}
  {{- return(rows[0][0] if rows and rows[0][0] else none) -}}
{%- endmacro %}

{#- A snapshot's features of side 'u' or 'i' read back as state columns (entity_counts, first and last day). -#}
{% macro state_from_features(side) -%}
{{ side }}_imp_cum as imp,
        {{ side }}_clk_cum as clk,
  {%- for s in scenes() %}
        {{ side }}_imp_cum_s{{ s }} as imp_s{{ s }},
        {{ side }}_clk_cum_s{{ s }} as clk_s{{ s }},
  {%- endfor %}
        date_sub(date, {{ side }}_days_since_first) as first_date,
        {{ side }}_last_hist_date as last_date
{%- endmacro %}

{#- The state columns summed over the carried rows of one key. -#}
{% macro state_totals(counts) -%}
  {%- for c in counts %}
        sum({{ c }}) as {{ c }},
  {%- endfor %}
        min(first_date) as first_date,
        max(last_date) as last_date
{%- endmacro %}

{#- A list of columns, each qualified by `relation` when given. -#}
{% macro column_list(names, relation=none) -%}
  {%- for c in names -%}
    {{ relation ~ '.' if relation }}{{ c }}{{ ',\n        ' if not loop.last }}
  {%- endfor -%}
{%- endmacro %}

{#- `start <= expr <= end` (or `< end` with below_end) over dates given as strings; none = open. -#}
{% macro date_range(expr, start, end, below_end=false) -%}
  {%- set parts = [] -%}
  {%- if start -%}{%- do parts.append(expr ~ " >= date'" ~ start ~ "'") -%}{%- endif -%}
  {%- if end -%}{%- do parts.append(expr ~ (" < " if below_end else " <= ") ~ "date'" ~ end ~ "'") -%}{%- endif -%}
  {%- if execute and not end -%}false{%- else -%}{{ parts | join(' and ') if parts else 'true' }}{%- endif -%}
{%- endmacro %}
