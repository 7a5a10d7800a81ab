"""The facts of the format are declared once (dbt vars) and everything else derives from them."""

import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
import yaml

from m2ctr import schema

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PACKAGES = tuple(p.rstrip("*") for p in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"])
PRODUCT = (*PACKAGES, "warehouse")


def product_files():
    for package in PRODUCT:
        for path in (ROOT / package).rglob("*"):
            built = {"target", "logs", "dbt_packages"} & set(path.relative_to(ROOT).parts)
            if path.suffix in (".py", ".sql", ".yml") and not built and path.name not in ("dbt_project.yml", "schema.py"):
                yield path


def literal_lists(text: str, names) -> list[str]:
    """Places where two of `names` sit side by side in a literal list: a copy of the list."""
    alt = "|".join(map(re.escape, names))
    return re.findall(rf"""['"]({alt})['"]\s*,\s*\n?\s*['"](?:{alt})['"]""", text)


def test_schema_reads_the_dbt_vars():
    dbt_vars = yaml.safe_load((ROOT / "warehouse" / "dbt_project.yml").read_text())["vars"]
    assert schema.SCENES == (0, 1, 2, 3, 4) == tuple(dbt_vars["scenes"])
    assert schema.N_DEEP_FEATURES == 27 == dbt_vars["n_deep_features"]
    assert schema.TEXT_COLUMNS == tuple(dbt_vars["text_columns"])
    assert schema.REJECT_REASONS == tuple(dbt_vars["reject_reasons"])
    assert schema.USER_TEXT_COLUMNS == ("bill_entity_seq", "service_entity_seq", "query_entity_seq")
    assert schema.ITEM_TEXT_COLUMNS == ("item_entity_names", "item_title")
    assert schema.TITLE_COLUMNS == ("item_title",)
    assert len(schema.RAW_COLUMNS) == 10 + 27 and schema.RAW_COLUMNS[9] == "scene"
    assert schema.RAW_GLOB == dbt_vars["raw_glob"] == "*.{csv,csv.gz,csv.bz2}"
    assert schema.LOG_TIME_FORMATS == tuple(dbt_vars["log_time_formats"])
    assert schema.RAW_CSV_OPTIONS["multiLine"] == "true"


def test_no_product_file_keeps_its_own_raw_format():
    """The log_time formats and the CSV options are written in dbt_project.yml only."""
    copies = []
    # The generator writes logs, it does not read them: its own time format is its business.
    for path in (p for p in product_files() if p.relative_to(ROOT).parts[0] != "synthetic"):
        text = path.read_text()
        for fmt in schema.LOG_TIME_FORMATS:
            if fmt in text:
                copies.append(f"{path.relative_to(ROOT)}: log_time format {fmt!r}")
        if re.search(r"multi_?line", text, re.IGNORECASE):
            copies.append(f"{path.relative_to(ROOT)}: a CSV reader option")
    assert not copies, copies


def test_no_product_file_keeps_its_own_copy_of_the_lists():
    copies = []
    for path in product_files():
        text = path.read_text()
        for what, names in (("reject reasons", schema.REJECT_REASONS), ("text columns", schema.TEXT_COLUMNS),
                            ("cold buckets", schema.COLD_BUCKETS)):
            if literal_lists(text, names):
                copies.append(f"{path.relative_to(ROOT)}: a list of {what}")
        if re.search(r"range\(27\)|deep_features_26\b", text):
            copies.append(f"{path.relative_to(ROOT)}: the deep-feature count")
    assert not copies, copies
    # the check can fail: a literal list is found
    assert literal_lists("x = ['bad_label', 'bad_scene']", schema.REJECT_REASONS)


def test_cold_buckets_follow_the_threshold():
    assert schema.cold_bucket([0, 1, schema.FEW_MAX, schema.FEW_MAX + 1, 100]).tolist() == [
        schema.ZERO, schema.FEW, schema.FEW, schema.WARM, schema.WARM]
    assert schema.COLD_BUCKETS == ("zero", "few", "warm")


def test_feature_families_partition_the_history_features():
    families = set(schema.COUNT_COLUMNS) | set(schema.CTR_COLUMNS) | set(schema.FLAG_COLUMNS) | set(
        schema.DAYS_COLUMNS)
    assert families == set(schema.HISTORY_FEATURES)
    assert ("u_clk_7d", "u_imp_7d") in schema.clicks_impressions_pairs(schema.HISTORY_FEATURES)


@pytest.mark.slow  # builds and installs a wheel (~20 s)
def test_schema_reads_the_dbt_vars_from_an_installed_wheel(tmp_path):
    """Installed from a wheel, outside any checkout, the package still finds the dbt vars and the
    profile."""
    # built from a copy of the sources: the build leaves build/ beside them
    src = tmp_path / "src"
    for name in ("pyproject.toml", "README.md", "warehouse/dbt_project.yml", "profiles.yml"):
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, src / name)
    for package in PACKAGES:
        shutil.copytree(ROOT / package, src / package, ignore=shutil.ignore_patterns("__pycache__"))
    wheels = tmp_path / "wheels"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(src)],
                   check=True, cwd=tmp_path)
    (wheel,) = wheels.glob("m2ctr-*.whl")
    # A pure-Python wheel installs by unpacking. `pip install --prefix` would first uninstall the
    # checkout's own editable m2ctr from the test's environment, and later tests' subprocesses
    # (torchrun, the service) would no longer import it.
    prefix = site = tmp_path / "prefix"
    zipfile.ZipFile(wheel).extractall(site)
    probe = ("from m2ctr import schema, profile; print(schema.DBT_PROJECT); print(schema.SCENES); "
             "print(profile.find_profile()); "
             "print(profile.local_spark_settings(['spark.sql.session.timeZone']))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": str(site)}, check=True).stdout.splitlines()
    assert Path(out[0]).is_relative_to(prefix) and not Path(out[0]).is_relative_to(ROOT)
    assert out[1] == str(schema.SCENES)
    assert Path(out[2]).is_relative_to(prefix) and not Path(out[2]).is_relative_to(ROOT)
    assert out[3] == "{'spark.sql.session.timeZone': 'UTC'}"


def _local_parameters() -> dict:
    profile = yaml.safe_load((ROOT / "profiles.yml").read_text())
    return profile["m2ctr"]["outputs"]["local"]["server_side_parameters"]


def test_local_spark_settings_render_the_profile(tmp_path, monkeypatch):
    """As dbt renders them: env_var with its default, or the variable when it is set."""
    from m2ctr.profile import local_spark_settings

    written = tmp_path / "profiles.yml"
    written.write_text(yaml.safe_dump({"m2ctr": {"outputs": {"local": {"server_side_parameters": {
        "spark.driver.memory": "{{ env_var('CTR_TEST_MEMORY', '4g') }}",
        "spark.sql.session.timeZone": "UTC",
    }}}}}))  # fmt: skip
    keys = ["spark.driver.memory", "spark.sql.session.timeZone"]
    monkeypatch.delenv("CTR_TEST_MEMORY", raising=False)
    assert local_spark_settings(keys, written) == dict(zip(keys, ["4g", "UTC"], strict=True))
    monkeypatch.setenv("CTR_TEST_MEMORY", "3g")
    assert local_spark_settings(keys, written)["spark.driver.memory"] == "3g"
    with pytest.raises(KeyError, match="spark.sql.ansi.enabled"):
        local_spark_settings(["spark.sql.ansi.enabled"], written)
    # the project's own profile sets every setting the validation takes from the build
    from expectations.sources import BUILD_SETTINGS

    assert set(local_spark_settings(BUILD_SETTINGS)) == set(BUILD_SETTINGS)


def test_the_build_spark_settings_are_written_in_the_profile_only():
    """No module repeats a value of the local target's Spark settings (`"key", "value"`)."""
    copies = [
        f"{path.relative_to(ROOT)}: {key}"
        for path in product_files()
        if path.suffix == ".py"
        for key, value in _local_parameters().items()
        if "{{" not in str(value)
        and re.search(rf"""['"]{re.escape(key)}['"]\s*,\s*['"]{re.escape(str(value))}['"]""",
                      path.read_text())
    ]
    assert copies == []
