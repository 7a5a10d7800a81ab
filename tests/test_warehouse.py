"""Integration tests of the dbt warehouse: real `dbt build` on Spark over small inputs.

Two builds share one SparkSession (conftest). The first input is a generated headerless sample
(March 2024) plus two hand-written files dated January 2024: one with a header whose feature
values are worked out below by hand, one with a malformed record of every kind. As the hand rows
are all earlier than the generated ones, their features see nothing else. The second input is the
same with every label of one generated day flipped (the leak test).
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.spark, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
BASE_COLUMNS = [
    "user_id",
    "item_id",
    "log_time",
    "label",
    "bill_entity_seq",
    "service_entity_seq",
    "query_entity_seq",
    "item_entity_names",
    "item_title",
    "scene",
]
DEEP = [f"deep_features_{i}" for i in range(27)]
REJECT_REASONS = {
    "bad_log_time",
    "bad_label",
    "bad_scene",
    "missing_user_id",
    "missing_item_id",
    "too_few_fields",
    "too_many_fields",
}

# The hand-computed example (file with a quoted header carrying only deep_features_5 and _0, swapped).
#        user  item  log_time               label scene
HAND = [
    ("u1", "iA", "2024-01-01 08:00:00", 1, 0),  # r1
    ("u1", "iB", "2024/1/1 9:30", 0, 1),  # r2  (short time format)
    ("u2", "iA", "2024-01-01 10:00:00", 0, 0),  # r3
    ("u1", "iA", "2024-01-02 08:00:00", 0, 0),  # r4
    ("u1", "iA", "2024-01-05 08:00:00", 1, 0),  # r5
    ("u2", "iB", "2024/1/5 12:00", 1, 1),  # r6
    ("u1", "iB", "2024-01-10 08:00:00", 0, 1),  # r7
    ("u1", "iA", "2024-01-12 23:59:59", 1, 0),  # r8
    ("u2", "iA", "2024-01-12 00:00:00", 0, 0),  # r9
    ("u1", "iA", "2024-01-12 08:00:00", 0, 0),  # r10 (same day as r8: never in r8's features)
]
MULTILINE_TITLE = 'Tea, "green"\nsecond line'


def _write_hand_input(raw: Path) -> None:
    with open(raw / "hand-0.csv", "w", newline="") as f:
        # the header's names quoted, its records not: a header is found by its names, quoted or not
        csv.writer(f, lineterminator="\n", quoting=csv.QUOTE_ALL).writerow(
            BASE_COLUMNS + ["deep_features_5", "deep_features_0"]
        )
        writer = csv.writer(f, lineterminator="\n")
        for k, (user, item, log_time, label, scene) in enumerate(HAND, start=1):
            writer.writerow(
                [
                    user,
                    item,
                    log_time,
                    label,
                    "b1,b2",
                    "s1",
                    "q1",
                    "e1,e2",
                    f"title {k}",
                    scene,
                    5.5,
                    k / 4,
                ]
            )

    # Headerless, CRLF line ends, and a quoted multi-line field before the first line end.
    def row(
        user="u9", item="iZ", log_time="2024-01-20 10:00:00", label="1", scene="4", title="plain"
    ):
        return [user, item, log_time, label, "", "", "", "", title, scene] + ["1.5"] * 27

    records = [
        row(title=MULTILINE_TITLE),
        row(user="dup"),
        row(user="dup"),  # byte-identical twins
        row(log_time="2024/1/21 7:05"),
        row(user=""),  # missing_user_id
        row(item=""),  # missing_item_id
        row(log_time="2024-02-30 10:00:00"),  # bad_log_time (no such day)
        row(log_time="yesterday"),  # bad_log_time
        row(label="2"),  # bad_label
        row(scene="9"),  # bad_scene
        ["u9", "iZ", "2024-01-20 10:00:00", "1", "x"],  # too_few_fields
        row() + ["surplus"],  # too_many_fields
    ]
    with open(raw / "hand-1.csv", "w", newline="") as f:
        csv.writer(f, lineterminator="\r\n").writerows(records)


def _generate(out: Path, *args: str) -> dict:
    subprocess.run(
        [sys.executable, "-m", "synthetic", "generate", "--out", str(out), "--quiet", *args],
        cwd=ROOT,
        check=True,
    )
    return json.loads((out / "manifest.json").read_text())


def _parse_day(log_time: str) -> dt.date | None:
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y/%m/%d %H:%M"):
        try:
            return dt.datetime.strptime(log_time, fmt).date()
        except ValueError:
            pass
    return None


def _flip_labels(src: Path, dest: Path, day: dt.date) -> int:
    """Copy the CSV parts of src to dest with every label of `day` flipped; returns how many."""
    dest.mkdir(parents=True)
    flipped = 0
    for part in sorted(src.glob("*.csv")):
        with open(part, newline="") as f:
            rows = list(csv.reader(f))
        for r in rows:
            if len(r) == 37 and r[3] in ("0", "1") and _parse_day(r[2].strip()) == day:
                r[3] = "1" if r[3] == "0" else "0"
                flipped += 1
        with open(dest / part.name, "w", newline="") as f:
            csv.writer(f, lineterminator="\n").writerows(rows)
    return flipped


def _orc(spark, build, model):
    return spark.read.orc(str(build.table_dir(model)))


# --------------------------------------------------------------------------- builds


@pytest.fixture(scope="module")
def raw_input(tmp_path_factory):
    raw = tmp_path_factory.mktemp("input") / "raw"
    manifest = _generate(
        raw, "--rows", "3000", "--days", "6", "--seed", "3", "--parts", "2", "--no-header"
    )
    _write_hand_input(raw)
    return raw, manifest


@pytest.fixture(scope="module")
def base_build(dbt_build, raw_input):
    build = dbt_build(raw_input[0], "wh_base")
    assert build.success, build.failures()
    return build


def test_dbt_unit_tests_pin_the_point_in_time_semantics(dbt_build, raw_input, base_build):
    """The unit_tests: of warehouse/models (window over calendar days with gaps, state carried into
    rebuilt days, a late day, the pair snapshot's grain) on their fixtures, in the schema of a
    finished build (dbt reads the column types of a fixture's model from it)."""
    run = dbt_build(raw_input[0], "wh_base", "--select", "test_type:unit", command="test")
    assert run.success, run.failures()
    names = {r.node.name for r in run.result.result}
    assert len(names) >= 6 and {"short_window_spans_calendar_days_with_gaps",
                                "the_pair_snapshot_has_one_row_per_pair"} <= names, names


# --------------------------------------------------------------------------- hand-computed


@pytest.fixture(scope="module")
def hand_rows(spark, base_build):
    rows = _orc(spark, base_build, "training_samples").collect()
    return {r["item_title"]: r for r in rows}


def test_hand_computed_user_features(hand_rows):
    r7, r8, r9, r10 = (hand_rows[f"title {k}"] for k in (7, 8, 9, 10))
    # u1 on 01-10: 7d = 01-03..01-09 holds r5 only (r4 on 01-02 is 8 days back); cum = r1 r2 r4 r5.
    assert (r7["u_imp_7d"], r7["u_clk_7d"], r7["u_ctr_7d"]) == (1, 1, 1.0)
    assert (r7["u_imp_cum"], r7["u_clk_cum"], r7["u_ctr_cum"]) == (4, 2, 0.5)
    assert [r7[f"u_imp_cum_s{s}"] for s in range(5)] == [3, 1, 0, 0, 0]
    assert [r7[f"u_clk_cum_s{s}"] for s in range(5)] == [2, 0, 0, 0, 0]
    assert r7["u_days_since_first"] == 9
    assert r7["u_last_hist_date"] == dt.date(2024, 1, 5)
    # u1 on 01-12: 7d = 01-05..01-11 (the D-7 boundary day is in) = r5 r7; same-day r10 is out.
    for r in (r8, r10):
        assert (r["u_imp_7d"], r["u_clk_7d"]) == (2, 1)
        assert (r["u_imp_cum"], r["u_clk_cum"]) == (5, 2)
        assert [r[f"u_imp_cum_s{s}"] for s in range(5)] == [3, 2, 0, 0, 0]
        assert r["u_has_history"] == 1 and r["u_days_since_first"] == 11
    # u2 on 01-12: 7d = r6; cum = r3 r6.
    assert (r9["u_imp_7d"], r9["u_clk_7d"], r9["u_imp_cum"], r9["u_clk_cum"]) == (1, 1, 2, 1)
    assert [r9[f"u_clk_cum_s{s}"] for s in range(5)] == [0, 1, 0, 0, 0]


def test_hand_computed_item_and_pair_features(hand_rows):
    r7, r8, r9 = (hand_rows[f"title {k}"] for k in (7, 8, 9))
    # iB on 01-10: cum = r2 r6, 7d = r6; both in scene 1.
    assert (r7["i_imp_cum"], r7["i_clk_cum"], r7["i_imp_7d"], r7["i_clk_7d"]) == (2, 1, 1, 1)
    assert (r7["i_imp_cum_s1"], r7["i_clk_cum_s1"]) == (2, 1)
    assert r7["i_days_since_first"] == 9 and r7["i_last_hist_date"] == dt.date(2024, 1, 5)
    # iA on 01-12: cum = r1 r3 r4 r5, 7d = r5.
    assert (r8["i_imp_cum"], r8["i_clk_cum"], r8["i_imp_7d"], r8["i_clk_7d"]) == (4, 2, 1, 1)
    # Pairs: (u1, iB) before 01-10 = r2; (u1, iA) before 01-12 = r1 r4 r5; (u2, iA) = r3.
    assert (r7["ui_imp_hist"], r7["ui_clk_hist"], r7["ui_has_history"]) == (1, 0, 1)
    assert r7["ui_last_hist_date"] == dt.date(2024, 1, 1)
    assert (r8["ui_imp_hist"], r8["ui_clk_hist"]) == (3, 2)
    assert r8["ui_last_hist_date"] == dt.date(2024, 1, 5)
    assert (r9["ui_imp_hist"], r9["ui_clk_hist"]) == (1, 0)


def test_hand_computed_first_day_and_smoothing(hand_rows):
    r1, r4, r7, r8 = (hand_rows[f"title {k}"] for k in (1, 4, 7, 8))
    # Nothing before the first day: zeros, no history, and the default prior 0.05 (m = 20).
    assert r1["u_imp_cum"] == r1["i_imp_cum"] == r1["ui_imp_hist"] == 0
    assert r1["u_has_history"] == r1["i_has_history"] == r1["ui_has_history"] == 0
    assert r1["u_last_hist_date"] is None and r1["u_days_since_first"] == 0
    assert r1["u_ctr_cum"] == 0.0 and r1["u_ctr_cum_smooth"] == pytest.approx(0.05)
    # u1 on 01-02: history of one click in one impression; scene 0 prior on 01-02 = r1 r3 = 1/2.
    assert (r4["u_imp_cum"], r4["u_clk_cum"], r4["u_ctr_cum"]) == (2, 1, 0.5)
    assert r4["u_ctr_cum_smooth"] == pytest.approx((1 + 20 * 0.5) / (2 + 20))
    # Scene 1 prior on 01-10 = r2 r6 = 1/2: u1's 7d ctr 1/1 is pulled to (1 + 10) / (1 + 20).
    assert r7["u_ctr_7d_smooth"] == pytest.approx(11 / 21)
    # Scene 0 prior on 01-12 = r1 r3 r4 r5 = 2/4; u1 cum = 2 clicks in 5.
    assert r8["u_ctr_cum_smooth"] == pytest.approx((2 + 20 * 0.5) / (5 + 20))
    assert r8["i_ctr_cum_smooth"] == pytest.approx((2 + 20 * 0.5) / (4 + 20))


def test_hand_input_staging(spark, base_build, hand_rows):
    staged = _orc(spark, base_build, "stg_impressions").where("source_file like 'hand-%'")
    quarantined = _orc(spark, base_build, "quarantine_impressions")
    assert staged.count() == len(HAND) + 4
    assert quarantined.where("source_file like 'hand-%'").count() == 8
    # Columns are mapped by the header name; deep features the file lacks are 0.0.
    r3 = hand_rows["title 3"]
    assert (r3["deep_features_5"], r3["deep_features_0"], r3["deep_features_1"]) == (5.5, 0.75, 0.0)
    assert r3["bill_entity_seq"] == "b1,b2" and r3["log_ts"] == dt.datetime(2024, 1, 1, 10)
    assert hand_rows["title 2"]["log_ts"] == dt.datetime(2024, 1, 1, 9, 30)
    # The quoted multi-line field survives, and the CRLF does not stick to the last field.
    multi = staged.where("item_title like 'Tea%'").first()
    assert multi["item_title"] == MULTILINE_TITLE
    assert multi["deep_features_26"] == 1.5
    assert staged.where("user_id = 'u9' and item_title = 'plain'").first()["log_ts"] == dt.datetime(
        2024, 1, 21, 7, 5
    )
    # Byte-identical records are two impressions with distinct ids.
    twins = staged.where("user_id = 'dup'").select("impression_id").collect()
    assert len({r[0] for r in twins}) == 2


def test_every_reject_reason_lands_in_quarantine(spark, base_build):
    rows = (
        _orc(spark, base_build, "quarantine_impressions")
        .where("source_file = 'hand-1.csv'")
        .collect()
    )
    reasons = sorted(r["reject_reason"] for r in rows)
    assert reasons == sorted([*REJECT_REASONS, "bad_log_time"])
    by_reason = {r["reject_reason"]: r["raw_record"] for r in rows}
    assert by_reason["too_few_fields"] == "u9,iZ,2024-01-20 10:00:00,1,x"
    assert by_reason["too_many_fields"].endswith(",1.5,surplus")
    assert by_reason["bad_scene"].startswith("u9,iZ,2024-01-20 10:00:00,1,,,,,plain,9,1.5,")


# --------------------------------------------------------------------------- generated input


def test_headerless_generated_input(spark, raw_input, base_build):
    _, manifest = raw_input
    generated = "source_file like 'part-%'"
    staged = _orc(spark, base_build, "stg_impressions").where(generated)
    training = _orc(spark, base_build, "training_samples").where("date >= '2024-03-01'")
    quarantined = _orc(spark, base_build, "quarantine_impressions").where(generated)
    assert staged.count() == training.count() == manifest["clean"]
    by_reason = {r[0]: r[1] for r in quarantined.groupBy("reject_reason").count().collect()}
    assert by_reason == {k: v for k, v in manifest["bad"]["by_kind"].items() if v}
    # Partitioned as promised: stg by date and scene, training by date.
    stg = base_build.table_dir("stg_impressions")
    march = sorted(p.name for p in stg.glob("date=2024-03-*"))
    assert len(march) == manifest["date_range"]["days"]
    assert sorted(p.name for p in (stg / march[0]).glob("scene=*"))
    assert (base_build.table_dir("training_samples") / march[0]).is_dir()


def test_flipping_one_days_labels_leaks_nowhere_before_it(
    spark, dbt_build, raw_input, base_build, tmp_path_factory
):
    raw, manifest = raw_input
    day = dt.date.fromisoformat(manifest["date_range"]["start"]) + dt.timedelta(days=2)
    flipped_raw = tmp_path_factory.mktemp("flipped") / "raw"
    assert _flip_labels(raw, flipped_raw, day) > 0
    flipped = dbt_build(flipped_raw, "wh_flip")
    assert flipped.success, flipped.failures()

    base = _orc(spark, base_build, "training_samples")
    other = _orc(spark, flipped, "training_samples")
    features = [c for c in base.columns if c not in ("impression_id", "label")]
    # Before D: the very same rows, ids and labels included (ids are stable across builds).
    before = f"date < '{day}'"
    assert base.where(before).count() > 0
    assert base.where(before).exceptAll(other.where(before)).count() == 0
    assert other.where(before).exceptAll(base.where(before)).count() == 0
    # On D: labels (and so ids) changed, every feature of every row did not.
    on = f"date = '{day}'"
    assert base.where(on).select(features).exceptAll(other.where(on).select(features)).count() == 0
    assert base.where(on).join(other.where(on), "impression_id").count() == 0
    # After D: the flipped clicks show up in the history features.
    after = f"date > '{day}'"
    changed = base.where(after).select(features).exceptAll(other.where(after).select(features))
    assert changed.count() > 0
