{#- The AntM2C column order of a headerless file; a header may name any subset of the deep features. -#}
{% macro raw_columns() -%}
  {{- return(['user_id', 'item_id', 'log_time', 'label'] + text_columns() + ['scene'] + deep_feature_columns()) -}}
{%- endmacro %}

{#- Whether two fields, the first two of a line, name the first two raw columns: a header line. -#}
{% macro is_header_line(first, second) -%}
  coalesce({{ first }} = '{{ raw_columns()[0] }}' and {{ second }} = '{{ raw_columns()[1] }}', false)
{%- endmacro %}

{% macro text_columns() -%}
  {{- return(var('text_columns')) -}}
{%- endmacro %}

{% macro deep_feature_columns() -%}
  {%- set cols = [] -%}
  {%- for i in range(var('n_deep_features')) -%}{%- do cols.append('deep_features_' ~ i) -%}{%- endfor -%}
  {{- return(cols) -}}
{%- endmacro %}

{#- The text and deep feature columns that stg_impressions and training_samples pass through as they are, as a select list. -#}
{% macro payload_columns() -%}
  {{- (text_columns() + deep_feature_columns()) | join(',\n        ') -}}
{%- endmacro %}

{% macro scenes() -%}
  {{- return(var('scenes')) -}}
{%- endmacro %}

{#- A value written back as one CSV field: quoted (quotes doubled) when it needs to be. -#}
{% macro csv_field(expr) -%}
  case
      when {{ expr }} is null then ''
      when {{ expr }} rlike '[",\r\n]' then concat('"', replace({{ expr }}, '"', '""'), '"')
      else {{ expr }}
  end
{%- endmacro %}
