{#-
  The column expressions of the point-in-time models, shared by the user and item sides (and, for
  the counts, by the pair): each model keeps its own query (imports, timeline, windows, final) and
  takes only these expressions from here.

  A timeline is one row per key and day with counts, plus one row on the day before rebuild_from
  carrying the key's state (its totals over every earlier day). Two frames over day numbers read it:
  `last_window` (calendar days D - window_days .. D - 1, whatever days are missing) and `before_day`
  (every earlier row). Neither holds the current day, so a row's own label is never in its features.
-#}

{#- The length of the short window in calendar days (var window_days). -#}
{% macro window_days() -%}
  {{- return(var('window_days')) -}}
{%- endmacro %}

{#- The counts of an entity's daily row and state: impressions and clicks, in total and per scene. -#}
{% macro entity_counts() -%}
  {%- set names = ['imp', 'clk'] -%}
  {%- for s in scenes() -%}{%- do names.extend(['imp_s' ~ s, 'clk_s' ~ s]) -%}{%- endfor -%}
  {{- return(names) -}}
{%- endmacro %}

{#- The counts of one day's impressions (group by key, date): total, and per scene with by_scene. -#}
{% macro daily_counts(by_scene=true) -%}
count(*) as imp,
        sum(label) as clk
  {%- if by_scene %}
  {%- for s in scenes() %},
        count_if(scene = {{ s }}) as imp_s{{ s }},
        count_if(scene = {{ s }} and label = 1) as clk_s{{ s }}
  {%- endfor %}
  {%- endif %}
{%- endmacro %}

{#- The two frames of a timeline of `keys` (a window clause). -#}
{% macro point_in_time_windows(keys) -%}
window
        last_window as (
            partition by {{ keys }} order by day_number
            range between {{ window_days() }} preceding and 1 preceding
        ),
        before_day as (
            partition by {{ keys }} order by day_number
            range between unbounded preceding and 1 preceding
        )
{%- endmacro %}

{#-
  The windowed sums of a timeline row: the short window over rows `in_window`, the cumulative
  counts, first and last day over rows `in_cumulative`. With as_of (a snapshot: one query day after
  every row of the timeline) both frames hold whole keys, so a plain aggregate grouped by key gives
  the same values without a sort.
-#}
{% macro windowed_counts(counts, as_of=none) -%}
  {%- set frames = {'last_window': 'over last_window', 'before_day': 'over before_day'} if as_of is none else {'last_window': '', 'before_day': ''} -%}
  {%- set in_window = 'in_window' if as_of is none else 'in_window and day_number >= unix_date(' ~ as_of ~ ') - ' ~ window_days() -%}
  {%- for c in ['imp', 'clk'] %}
        sum(if({{ in_window }}, {{ c }}, 0)) {{ frames.last_window }} as {{ c }}_window,
  {%- endfor %}
  {%- for c in counts %}
        sum(if(in_cumulative, {{ c }}, 0)) {{ frames.before_day }} as {{ c }}_cum,
  {%- endfor %}
        min(if(in_cumulative, first_date, null)) {{ frames.before_day }} as first_hist_date,
        max(if(in_cumulative, last_date, null)) {{ frames.before_day }} as last_hist_date
{%- endmacro %}

{#- The features of side 'u' or 'i' from windowed_counts, named as in training_samples. -#}
{% macro entity_features(side) -%}
coalesce(imp_window, 0) as {{ side }}_imp_7d,
        coalesce(clk_window, 0) as {{ side }}_clk_7d,
        case when imp_window > 0 then clk_window / imp_window else 0.0 end as {{ side }}_ctr_7d,
        coalesce(imp_cum, 0) as {{ side }}_imp_cum,
        coalesce(clk_cum, 0) as {{ side }}_clk_cum,
        case when imp_cum > 0 then clk_cum / imp_cum else 0.0 end as {{ side }}_ctr_cum,
  {%- for s in scenes() %}
        coalesce(imp_s{{ s }}_cum, 0) as {{ side }}_imp_cum_s{{ s }},
        coalesce(clk_s{{ s }}_cum, 0) as {{ side }}_clk_cum_s{{ s }},
  {%- endfor %}
        coalesce(datediff(date, first_hist_date), 0) as {{ side }}_days_since_first,
        case when last_hist_date is not null then 1 else 0 end as {{ side }}_has_history,
        last_hist_date as {{ side }}_last_hist_date
{%- endmacro %}

{#- The features of a (user, item) pair from its sums before the day (imp_hist, clk_hist, last_hist_date). -#}
{% macro pair_features() -%}
coalesce(imp_hist, 0) as ui_imp_hist,
        coalesce(clk_hist, 0) as ui_clk_hist,
        case when last_hist_date is not null then 1 else 0 end as ui_has_history,
        last_hist_date as ui_last_hist_date
{%- endmacro %}
