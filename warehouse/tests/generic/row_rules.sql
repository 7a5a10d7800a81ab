{#-
  The rules of a table's rows in one query (one scan, one shuffle by the key): `primary_key`
  identifies a row (never null, never repeated); no column of `not_null` is null; each column of
  `accepted_values` holds only the values listed (nulls aside). One row per failing key, naming
  the rules it breaks in `broken_rules`.
-#}
{% test row_rules(model, primary_key, not_null=[], accepted_values={}) %}
{%- set rules = ["if(count(*) > 1, 'repeated primary key', null)"] -%}
{%- for c in primary_key -%}
  {%- do rules.append("if(" ~ c ~ " is null, '" ~ c ~ " is null', null)") -%}
{%- endfor -%}
{%- for c in not_null -%}
  {%- do rules.append("if(count_if(" ~ c ~ " is null) > 0, '" ~ c ~ " is null', null)") -%}
{%- endfor -%}
{%- for c, values in accepted_values.items() -%}
  {%- set listed = [] -%}
  {%- for v in values -%}{%- do listed.append(sql_string(v) if v is string else v | string) -%}{%- endfor -%}
  {%- do rules.append("if(count_if(" ~ c ~ " not in (" ~ listed | join(', ') ~ ")) > 0, '" ~ c ~ " not in accepted values', null)") -%}
{%- endfor %}
with checked as (

    select
        {{ primary_key | join(', ') }},
        count(*) as n_rows,
        concat_ws('; ',
            {{ rules | join(',\n            ') }}
        ) as broken_rules
    from {{ model }}
    group by {{ primary_key | join(', ') }}

)

select * from checked
where broken_rules != ''
{% endtest %}
