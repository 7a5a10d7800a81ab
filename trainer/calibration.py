"""Per-scene calibration of click probabilities, fitted on the validation days.

An ads system multiplies a predicted CTR by a bid, so a ranking that is right with probabilities that
are off by scene misprices every auction. One calibrator per scene maps the model's probability to a
calibrated one:

- platt:    p' = sigmoid(a * logit(p) + b), fitted by logistic regression on logit(p) with a prior
            that pulls (a, b) toward the identity (1, 0). Its strength is chosen per run from PRIORS
            by out-of-fold logloss (`choose_prior`): a model trained on logloss is often already
            close to calibrated, and a map fitted freely on one validation day then fits that day's
            noise, which the next day does not share;
- isotonic: a monotone step function of p (scikit-learn's IsotonicRegression), plus p * 1e-6 so that
            it is strictly increasing and the ranking within a scene never changes.

`auto` picks, for the whole run, the method with the lower out-of-fold logloss on the validation rows
(5 folds), then refits it on all of them. Where the validation rows show no miscalibration, the
chosen prior keeps every Platt map at about the identity, and the probabilities stay as they were.
Both maps are stored as plain numbers in the run's calibration.json (written and read by `RunDir`)
and applied with numpy alone (and in the ONNX export by the same formulas).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .artifacts import RunDir
from .metrics import logloss, row_logloss

METHODS = ("platt", "isotonic")
CHOICES = ("auto", "none", *METHODS)
FOLDS = 5
# weights of the pull toward the identity, against the summed logloss of a scene's rows
PRIORS = (0, 100, 300, 1000, 3000, 10000, 30000, 100000)
MIN_ROWS = 200  # a scene with fewer validation rows (or one class only) keeps its raw probabilities
EPS = 1e-7
TIE_BREAK = 1e-6


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, np.float64), EPS, 1 - EPS)
    return np.log(p) - np.log1p(-p)


def fit_map(method: str, y: np.ndarray, p: np.ndarray, prior: float = 0.0) -> dict:
    """The parameters of one scene's map, as JSON-ready numbers."""
    if method == "platt":
        a, b = _platt(y, _logit(p), prior)
        if a <= 0:  # a slope of 0 or below would flatten or reverse the scene's ranking: shift only
            a, b = 1.0, _shift(y, _logit(p))
        return {"a": a, "b": b}
    if method == "isotonic":
        from sklearn.isotonic import IsotonicRegression

        iso = IsotonicRegression(y_min=EPS, y_max=1 - EPS, out_of_bounds="clip").fit(p, y)
        return {"x": iso.X_thresholds_.tolist(), "y": iso.y_thresholds_.tolist()}
    raise ValueError(f"unknown calibration method {method!r} (one of {', '.join(METHODS)})")


def _platt(y: np.ndarray, x: np.ndarray, prior: float) -> tuple[float, float]:
    """(a, b) minimising the summed logloss of sigmoid(a * x + b) plus prior / 2 * ((a - 1)^2 + b^2)."""
    from scipy.optimize import minimize

    def loss(ab: np.ndarray) -> tuple[float, np.ndarray]:
        z = ab[0] * x + ab[1]
        r = 1.0 / (1.0 + np.exp(-z)) - y
        pen = ab - (1.0, 0.0)
        value = np.logaddexp(0.0, z).sum() - (y * z).sum() + prior / 2 * (pen @ pen)
        return value, np.array([(r * x).sum(), r.sum()]) + prior * pen

    ab = minimize(loss, np.array([1.0, 0.0]), jac=True, method="L-BFGS-B").x
    return float(ab[0]), float(ab[1])


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


def out_of_fold(method: str, y: np.ndarray, p: np.ndarray, scene: np.ndarray, prior: float = 0.0,
                seed: int = 0) -> np.ndarray:
    """The validation rows' probabilities under `method`, each row calibrated by maps fitted without it."""
    fold = np.random.default_rng(seed).integers(0, FOLDS, len(y))
    out = p.astype(np.float64).copy()
    for s in np.unique(scene):
        for k in range(FOLDS):
            fit_rows = (scene == s) & (fold != k)
            held = (scene == s) & (fold == k)
            if held.any() and _usable(y[fit_rows]):
                out[held] = apply_map(method, fit_map(method, y[fit_rows], p[fit_rows], prior), p[held])
    return out


def choose_prior(y: np.ndarray, p: np.ndarray, scene: np.ndarray) -> tuple[float, float]:
    """The strongest Platt prior of PRIORS whose out-of-fold logloss is within one standard error of
    the best one's, and that logloss. The losses of neighbouring priors differ by less than their
    noise on one day of rows, so the lowest alone would often pick a weak prior by chance; the
    standard error is that of the per-row difference from the best, paired on the same rows."""
    losses = {prior: row_logloss(y, out_of_fold("platt", y, p, scene, prior)) for prior in PRIORS}
    best = losses[min(losses, key=lambda prior: losses[prior].mean())]
    diffs = {prior: loss - best for prior, loss in losses.items()}
    chosen = max(prior for prior, d in diffs.items() if d.mean() <= d.std() / np.sqrt(len(d)))
    return chosen, float(losses[chosen].mean())


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


def fit(method: str, y: np.ndarray, p: np.ndarray, scene: np.ndarray, prior: float | None = None) -> Calibration:
    """Per-scene maps fitted on validation rows (`scene` holds scene indices). `prior`: the Platt
    prior to use instead of choosing one (a refresh keeps its parent's)."""
    if method not in CHOICES:
        raise ValueError(f"unknown calibration {method!r} (one of {', '.join(CHOICES)})")
    y = np.asarray(y, np.float64)
    p = np.asarray(p, np.float64)
    if method == "none":
        return Calibration()
    choice = {}
    if method in ("auto", "platt") and prior is None:
        choice["platt_prior"], choice["platt"] = choose_prior(y, p, scene)
    elif method == "platt":
        choice["platt_prior"] = prior
    if method == "auto":
        choice["isotonic"] = logloss(y, out_of_fold("isotonic", y, p, scene))
        choice["raw"] = logloss(y, p)
        method = min(METHODS, key=choice.get)
    prior = choice.get("platt_prior", 0.0)
    maps = {int(s): fit_map(method, y[scene == s], p[scene == s], prior)
            for s in np.unique(scene) if _usable(y[scene == s])}
    return Calibration(method, maps, choice)
