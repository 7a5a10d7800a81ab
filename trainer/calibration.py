"""Per-scene calibration of click probabilities, fitted on the validation days.

An ads system multiplies a predicted CTR by a bid, so a ranking that is right with probabilities that
are off by scene misprices every auction. One calibrator per scene maps the model's probability to a
calibrated one:

- platt:    p' = sigmoid(a * logit(p) + b), fitted by logistic regression on logit(p);
- isotonic: a monotone step function of p (scikit-learn's IsotonicRegression), plus p * 1e-6 so that
            it is strictly increasing and the ranking within a scene never changes.

`auto` picks, for the whole run, the method with the lower out-of-fold logloss on the validation rows
(5 folds), then refits it on all of them. Both maps are stored as plain numbers in the run's
calibration.json (written and read by `RunDir`) and applied with numpy alone (and in the ONNX export
by the same formulas).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .artifacts import RunDir
from .metrics import logloss

METHODS = ("platt", "isotonic")
CHOICES = ("auto", "none", *METHODS)
FOLDS = 5
MIN_ROWS = 200  # a scene with fewer validation rows (or one class only) keeps its raw probabilities
EPS = 1e-7
TIE_BREAK = 1e-6


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, np.float64), EPS, 1 - EPS)
    return np.log(p) - np.log1p(-p)


def fit_map(method: str, y: np.ndarray, p: np.ndarray) -> dict:
    """The parameters of one scene's map, as JSON-ready numbers."""
    if method == "platt":
        from sklearn.linear_model import LogisticRegression

        lr = LogisticRegression(C=1e6, max_iter=1000).fit(_logit(p)[:, None], y)
        a, b = float(lr.coef_[0, 0]), float(lr.intercept_[0])
        if a <= 0:  # a slope of 0 or below would flatten or reverse the scene's ranking: shift only
            a, b = 1.0, _shift(y, _logit(p))
        return {"a": a, "b": b}
    if method == "isotonic":
        from sklearn.isotonic import IsotonicRegression

        iso = IsotonicRegression(y_min=EPS, y_max=1 - EPS, out_of_bounds="clip").fit(p, y)
        return {"x": iso.X_thresholds_.tolist(), "y": iso.y_thresholds_.tolist()}
    raise ValueError(f"unknown calibration method {method!r} (one of {', '.join(METHODS)})")


def _shift(y: np.ndarray, x: np.ndarray, steps: int = 50) -> float:
    """The b of sigmoid(x + b) with the lowest logloss (Newton's method; the loss is convex in b)."""
    b = 0.0
    for _ in range(steps):
        q = 1.0 / (1.0 + np.exp(-(x + b)))
        step = (q - y).sum() / max((q * (1 - q)).sum(), 1e-12)
        b -= step
        if abs(step) < 1e-10:
            break
    return float(b)


def apply_map(method: str, params: dict, p: np.ndarray) -> np.ndarray:
    p = np.asarray(p, np.float64)
    if method == "platt":
        return 1.0 / (1.0 + np.exp(-(params["a"] * _logit(p) + params["b"])))
    if method == "isotonic":
        return np.clip(np.interp(p, params["x"], params["y"]) + TIE_BREAK * p, EPS, 1 - EPS)
    return p


def _usable(y: np.ndarray) -> bool:
    return len(y) >= MIN_ROWS and 0 < y.sum() < len(y)


def out_of_fold_logloss(method: str, y: np.ndarray, p: np.ndarray, scene: np.ndarray, seed: int = 0) -> float:
    """Logloss of `method` on the validation rows, each row calibrated by maps fitted without it."""
    fold = np.random.default_rng(seed).integers(0, FOLDS, len(y))
    out = p.astype(np.float64).copy()
    for s in np.unique(scene):
        for k in range(FOLDS):
            fit_rows = (scene == s) & (fold != k)
            held = (scene == s) & (fold == k)
            if held.any() and _usable(y[fit_rows]):
                out[held] = apply_map(method, fit_map(method, y[fit_rows], p[fit_rows]), p[held])
    return logloss(y, out)


@dataclass
class Calibration:
    """One map per scene index (the run's `prep.scenes` order); scenes without a map keep p."""

    method: str = "none"
    maps: dict[int, dict] = field(default_factory=dict)
    choice: dict = field(default_factory=dict)  # how `auto` chose: out-of-fold logloss per method

    def __call__(self, p: np.ndarray, scene: np.ndarray) -> np.ndarray:
        if self.method == "none":
            return np.asarray(p, np.float64)
        out = np.asarray(p, np.float64).copy()
        for s, params in self.maps.items():
            rows = scene == s
            if rows.any():
                out[rows] = apply_map(self.method, params, out[rows])
        return out

    def to_dict(self) -> dict:
        return {"method": self.method, "maps": {str(s): m for s, m in self.maps.items()}, "choice": self.choice}

    @classmethod
    def from_dict(cls, d: dict) -> Calibration:
        return cls(d["method"], {int(s): m for s, m in d["maps"].items()}, d.get("choice", {}))

    @classmethod
    def of_run(cls, run: RunDir) -> Calibration:
        """The run's calibration; a run written before calibration existed has none."""
        doc = run.calibration()
        return cls() if doc is None else cls.from_dict(doc)


def fit(method: str, y: np.ndarray, p: np.ndarray, scene: np.ndarray) -> Calibration:
    """Per-scene maps fitted on validation rows (`scene` holds scene indices)."""
    if method not in CHOICES:
        raise ValueError(f"unknown calibration {method!r} (one of {', '.join(CHOICES)})")
    y = np.asarray(y, np.float64)
    p = np.asarray(p, np.float64)
    if method == "none":
        return Calibration()
    choice = {}
    if method == "auto":
        choice = {m: out_of_fold_logloss(m, y, p, scene) for m in METHODS}
        choice["raw"] = logloss(y, p)
        method = min(METHODS, key=choice.get)
    maps = {int(s): fit_map(method, y[scene == s], p[scene == s])
            for s in np.unique(scene) if _usable(y[scene == s])}
    return Calibration(method, maps, choice)
