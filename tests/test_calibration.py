"""Per-scene calibration: fitted on validation rows, applied by the stored numbers alone."""

from __future__ import annotations

import numpy as np
import pytest

from trainer import calibration as C
from trainer import metrics as M
from trainer.artifacts import RunDir


def miscalibrated(n: int = 40000, seed: int = 0):
    """Three scenes whose scores are right in order but wrong in level, each its own way."""
    rng = np.random.default_rng(seed)
    scene = rng.integers(0, 3, n)
    true_logit = rng.normal(-2.0, 1.0, n)
    y = (rng.random(n) < 1 / (1 + np.exp(-true_logit))).astype(np.float64)
    shift = np.array([1.0, -0.8, 0.0])[scene]   # too high, too low, about right
    scale = np.array([1.0, 1.0, 0.5])[scene]    # the third is under-confident
    p = 1 / (1 + np.exp(-(scale * true_logit + shift)))
    return y, p, scene


def scene_ece(y, p, scene, s):
    return M.ece(y[scene == s], p[scene == s])


@pytest.mark.parametrize("method", ["platt", "isotonic"])
def test_each_scene_is_brought_to_its_observed_rate_and_keeps_its_ranking(method):
    y, p, scene = miscalibrated(120000)
    half = len(y) // 2
    cal = C.fit(method, y[:half], p[:half], scene[:half])  # fitted on one half
    y, p, scene = y[half:], p[half:], scene[half:]         # judged on the other
    q = cal(p, scene)
    for s in range(3):
        assert scene_ece(y, p, scene, s) > 0.02, "the fixture must be miscalibrated"
        assert scene_ece(y, q, scene, s) < 0.01
        assert M.auc(y[scene == s], q[scene == s]) == pytest.approx(M.auc(y[scene == s], p[scene == s]), abs=1e-6)
    assert M.logloss(y, q) < M.logloss(y, p)


def test_auto_picks_by_out_of_fold_logloss_and_records_why():
    y, p, scene = miscalibrated()
    cal = C.fit("auto", y, p, scene)
    assert cal.method in C.METHODS
    assert set(cal.choice) == {"platt", "platt_prior", "isotonic", "raw"}
    assert cal.choice[cal.method] == min(cal.choice["platt"], cal.choice["isotonic"])
    assert cal.choice[cal.method] < cal.choice["raw"]


def test_platt_prior_is_weak_where_the_scores_are_off_and_strong_where_they_are_right():
    """Miscalibrated scores take little or no pull toward the identity map; scores already
    calibrated take a strong one, so their map stays near the identity instead of fitting noise."""
    y, p, scene = miscalibrated(20000)
    off = C.fit("platt", y, p, scene)
    assert off.choice["platt_prior"] <= 300
    assert abs(off.maps[0]["b"] + 1.0) < 0.1  # scene 0 scores 1 logit too high
    rng = np.random.default_rng(1)
    n = 20000
    right = rng.uniform(0.02, 0.3, n)
    clicks = (rng.random(n) < right).astype(np.float64)
    scenes = rng.integers(0, 3, n)
    on = C.fit("platt", clicks, right, scenes)
    free = {s: C.fit_map("platt", clicks[scenes == s], right[scenes == s]) for s in range(3)}
    assert on.choice["platt_prior"] >= 1000
    for s in range(3):
        assert abs(on.maps[s]["a"] - 1) + abs(on.maps[s]["b"]) < abs(free[s]["a"] - 1) + abs(free[s]["b"])


def test_stored_numbers_give_the_same_probabilities(tmp_path):
    y, p, scene = miscalibrated(5000)
    for method in ("platt", "isotonic"):
        cal = C.fit(method, y, p, scene)
        RunDir(tmp_path).write_calibration(cal.to_dict())
        again = C.Calibration.of_run(RunDir(tmp_path))
        assert again.method == method
        np.testing.assert_array_equal(again(p, scene), cal(p, scene))


def test_small_or_one_class_scenes_and_old_runs_keep_raw_probabilities(tmp_path):
    y, p, scene = miscalibrated(5000)
    scene = scene.copy()
    scene[:50] = 7                      # too few rows to fit on
    y[scene == 2] = 0                   # one class only
    cal = C.fit("platt", y, p, scene)
    assert set(cal.maps) == {0, 1}
    q = cal(p, scene)
    keep = np.isin(scene, [2, 7])
    np.testing.assert_array_equal(q[keep], p[keep])
    old_run = RunDir(tmp_path)  # a run written before calibration existed
    assert C.Calibration.of_run(old_run).method == "none"
    np.testing.assert_array_equal(C.Calibration.of_run(old_run)(p, scene), p)


def test_none_and_unknown_methods():
    y, p, scene = miscalibrated(2000)
    assert C.fit("none", y, p, scene).method == "none"
    with pytest.raises(ValueError, match="unknown calibration"):
        C.fit("beta", y, p, scene)


def test_normalized_entropy_is_logloss_over_the_base_rate_entropy():
    y = np.array([1, 0, 0, 0], np.float64)
    p = np.full(4, 0.25)
    q = M.probability_quality(y, p, base_rate=0.25)
    assert q["ne"] == pytest.approx(1.0)          # predicting the base rate is NE 1
    assert q["predicted_over_observed"] == pytest.approx(1.0)
    assert M.probability_quality(y, np.array([0.9, 0.1, 0.1, 0.1]), 0.25)["ne"] < 1


def test_platt_never_reverses_a_scenes_ranking():
    """A scene whose validation clicks run against the model's scores would get a negative slope:
    the map only shifts it instead, to the scene's observed rate, and its ranking stays."""
    rng = np.random.default_rng(0)
    p = rng.uniform(0.05, 0.4, 4000)
    y = (rng.random(4000) < 0.45 - p).astype(float)  # the higher the score, the fewer the clicks
    params = C.fit_map("platt", y, p)
    assert params["a"] == 1.0
    out = C.apply_map("platt", params, p)
    assert (np.diff(out[np.argsort(p)]) >= 0).all()
    assert out.mean() == pytest.approx(y.mean(), abs=0.01)
