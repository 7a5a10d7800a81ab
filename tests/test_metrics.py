"""trainer.metrics against scikit-learn and hand-worked examples."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import log_loss, roc_auc_score

from trainer import metrics as M


@pytest.mark.parametrize("seed", range(5))
def test_auc_matches_sklearn_including_ties(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(50, 3000))
    y = (rng.random(n) < rng.uniform(0.05, 0.6)).astype(int)
    p = rng.random(n) * 0.5 + y * rng.random(n) * 0.3
    if seed % 2:
        p = np.round(p, 1)  # heavy ties: tied scores must share their average rank
    assert M.auc(y, p) == pytest.approx(roc_auc_score(y, p), abs=1e-12)


def test_logloss_matches_sklearn():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 1000)
    p = rng.uniform(0.01, 0.99, 1000)
    assert M.logloss(y, p) == pytest.approx(log_loss(y, p), rel=1e-12)


def test_gauc_hand_made_example():
    # user a: clicked item scored highest -> AUC 1 over 3 rows
    # user b: clicked item scored lowest  -> AUC 0 over 2 rows
    # user c: clicks only, user d: one non-click -> no AUC, left out of the weighting
    users = np.array(["a", "a", "a", "b", "b", "c", "c", "d"], dtype=object)
    y = np.array([1, 0, 0, 1, 0, 1, 1, 0])
    p = np.array([0.9, 0.1, 0.5, 0.2, 0.8, 0.3, 0.4, 0.7])
    assert M.gauc(y, p, users) == pytest.approx((3 * 1.0 + 2 * 0.0) / 5)


def test_gauc_matches_per_user_sklearn_on_random_input():
    rng = np.random.default_rng(7)
    n = 4000
    users = rng.integers(0, 300, n).astype(str).astype(object)
    y = rng.integers(0, 2, n)
    p = np.round(rng.random(n) + 0.3 * y, 2)
    num = den = 0.0
    for u in np.unique(users):
        m = users == u
        if 0 < y[m].sum() < m.sum():
            num += m.sum() * roc_auc_score(y[m], p[m])
            den += m.sum()
    assert M.gauc(y, p, users) == pytest.approx(num / den, abs=1e-12)


def test_one_class_and_empty_slices_are_none():
    assert M.auc(np.ones(5), np.random.default_rng(0).random(5)) is None
    assert M.auc(np.array([]), np.array([])) is None
    assert M.gauc(np.array([1, 0]), np.array([0.2, 0.4]), np.array(["a", "b"], object)) is None
    assert M.logloss(np.array([]), np.array([])) is None


def test_evaluate_slices_by_scene_and_cold_bucket():
    rng = np.random.default_rng(3)
    n = 600
    split = {
        "label": rng.integers(0, 2, n).astype(np.float32),
        "scene": rng.integers(0, 2, n),
        "cold_user": rng.integers(0, 3, n),
        "cold_item": np.full(n, 2),  # every item warm: zero and few are empty
        "user_key": rng.integers(0, 50, n),
    }
    split["label"][split["scene"] == 1] = 0  # scene "7" has no clicks
    p = rng.random(n)
    out = M.evaluate(split, p, scenes=[3, 7])
    assert set(out) == {"n", "auc", "logloss", "gauc", "per_scene_auc", "cold_start", "calibration"}
    assert out["n"] == n
    m3 = split["scene"] == 0
    assert out["per_scene_auc"]["3"] == pytest.approx(roc_auc_score(split["label"][m3], p[m3]))
    assert out["per_scene_auc"]["7"] is None
    for b, name in enumerate(("zero", "few", "warm")):
        m = split["cold_user"] == b
        assert out["cold_start"]["user"][name]["n"] == int(m.sum())
        assert out["cold_start"]["user"][name]["auc"] == pytest.approx(roc_auc_score(split["label"][m], p[m]))
    assert out["cold_start"]["item"]["zero"] == {"n": 0, "auc": None}
    assert out["cold_start"]["item"]["warm"]["n"] == n
