"""Detectors on seeded synthetic tenant windows: known-answer ROC-AUC floors, FPR calibration, determinism,
scikit-learn conventions, pickling, explanations (pyod-style)."""

from __future__ import annotations

import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import cloudpickle
import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.metrics import roc_auc_score

from netsentry.models.base import Detector
from netsentry.models.boosted import BoostedDetector
from netsentry.models.iforest import IsolationForestDetector
from netsentry.models.registry import make_detector
from netsentry.models.thresholds import threshold_for_fpr
from netsentry.pipeline.core.errors import ConfigError, NoUsableDataError, SchemaError
from tests.paths import REPO

NAMES = ["iforest", "autoencoder", "boosted"]

# Features each planted behaviour shifts (see make_windows).
SHIFTED = {
    "scan": {"remote_ports", "remote_ips", "failed_ratio", "new_dest_rate"},
    "exfiltration": {"bytes", "packets", "byte_balance"},
    "beaconing": {"dns_rate", "beacon", "sensitive_share"},
}


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def make_windows(n_benign: int = 2000, n_anomalies: int = 100, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray, list]:
    """Tenant windows in time order: 12 correlated features (heavy-tailed counts, ratios in [0, 1], a signed
    balance) driven by 3 latent factors; ``n_anomalies`` rows at random times get one of three behaviours.
    Returns ``(X, y, kinds)`` with ``kinds[i]`` the behaviour of row i (None for benign)."""
    rng = np.random.default_rng(seed)
    n = n_benign + n_anomalies
    z = rng.normal(size=(n, 3))

    def noise(scale: float = 0.3) -> np.ndarray:
        return scale * rng.normal(size=n)

    flows = np.round(np.exp(2.0 + 0.8 * z[:, 0] + noise()))
    packets = np.round(flows * np.exp(2.5 + 0.3 * z[:, 1] + noise()))
    remote_ips = np.round(np.exp(1.0 + 0.7 * z[:, 0] + 0.4 * z[:, 2] + noise()))
    X = pd.DataFrame(
        {
            "flows": flows,
            "packets": packets,
            "bytes": np.round(packets * np.exp(6.0 + noise(0.4))),
            "remote_ips": remote_ips,
            "remote_ports": np.round(np.exp(0.5 + 0.5 * z[:, 2] + noise())),
            "ip_entropy": np.log2(1 + remote_ips) * (0.8 + noise(0.05)),
            "failed_ratio": _sigmoid(-3.0 + 0.5 * z[:, 1] + noise()),
            "byte_balance": np.tanh(0.15 * z[:, 2] + noise(0.1)),
            "sensitive_share": _sigmoid(-2.5 + 0.3 * z[:, 0] + noise(0.5)),
            "new_dest_rate": _sigmoid(-2.0 + 0.6 * z[:, 2] + noise()),
            "beacon": _sigmoid(-1.5 + noise(0.5)),
            "dns_rate": np.round(np.exp(1.0 + 0.5 * z[:, 0] + noise())),
        }
    )
    y = np.zeros(n, dtype=int)
    kinds: list = [None] * n
    rows = rng.choice(n, n_anomalies, replace=False)
    y[rows] = 1
    for row, k in zip(rows, rng.integers(0, 3, n_anomalies), strict=True):
        if k == 0:
            X.loc[row, ["remote_ports", "remote_ips"]] = (1 + X.loc[row, ["remote_ports", "remote_ips"]]) * [50, 20]
            X.loc[row, ["failed_ratio", "new_dest_rate"]] = _sigmoid(0.5 + 0.3 * rng.normal(size=2))
        elif k == 1:
            X.loc[row, ["bytes", "packets"]] *= [1000, 10]
            X.loc[row, "byte_balance"] = 0.99
        else:
            X.loc[row, "dns_rate"] *= 50
            X.loc[row, ["beacon", "sensitive_share"]] = _sigmoid(1.0 + 0.3 * rng.normal(size=2))
        kinds[row] = ("scan", "exfiltration", "beaconing")[k]
    return X, y, kinds


@pytest.fixture(scope="module")
def train() -> tuple[pd.DataFrame, np.ndarray]:
    X, y, _ = make_windows(seed=0)
    return X, y


@pytest.fixture(scope="module")
def test_set() -> tuple[pd.DataFrame, np.ndarray, list]:
    return make_windows(seed=1)


@pytest.fixture(scope="module")
def fresh_benign() -> pd.DataFrame:
    return make_windows(n_benign=4000, n_anomalies=0, seed=2)[0]


_FITTED: dict[str, Detector] = {}


def fitted_once(name: str, train: tuple[pd.DataFrame, np.ndarray]) -> Detector:
    """Each detector fitted once per worker on the labelled training windows (default parameters)."""
    if name not in _FITTED:
        _FITTED[name] = make_detector(name).fit(*train)
    return _FITTED[name]


@pytest.fixture(params=NAMES)
def fitted(request: pytest.FixtureRequest, train: tuple[pd.DataFrame, np.ndarray]) -> Detector:
    return fitted_once(request.param, train)


# ---------------------------------------------------------------------- known answers
def test_roc_auc_floor(fitted: Detector, test_set: tuple[pd.DataFrame, np.ndarray, list]) -> None:
    X, y, _ = test_set
    assert roc_auc_score(y, fitted.score_samples(X)) >= 0.95


def test_fpr_on_fresh_benign_near_target(fitted: Detector, fresh_benign: pd.DataFrame) -> None:
    assert fitted.target_fpr == 0.01
    assert 0.0 <= fitted.predict(fresh_benign).mean() <= 0.03


def test_calibration_uses_last_benign_rows(fitted: Detector, train: tuple[pd.DataFrame, np.ndarray]) -> None:
    X, y = train
    cal = fitted.calibration_
    if fitted.kind == "unsupervised":  # anomalies dropped, then the last 25% of the 2000 benign rows
        held_out = X[y == 0].iloc[-500:]
        assert (cal["n_train"], cal["n_benign_calibration"]) == (1500, 500)
    else:  # boosted: every row trains; the threshold is a quantile of out-of-fold benign scores
        assert cal["n_train"] == len(X) and cal["n_benign_calibration"] == int((y == 0).sum())
        assert "out-of-fold" in cal["method"]
        assert cal["achieved_fpr"] <= 0.01
        return
    assert fitted.threshold_ == threshold_for_fpr(fitted.score_samples(held_out), 0.01)
    assert cal["target_fpr"] == 0.01 and cal["threshold"] == fitted.threshold_
    assert cal["achieved_fpr"] <= 0.01
    assert "benign validation scores" in cal["method"]


def test_predict_and_decision_function_agree(fitted: Detector, test_set: tuple[pd.DataFrame, np.ndarray, list]) -> None:
    X = test_set[0]
    scores = fitted.score_samples(X)
    assert scores.dtype == np.float64 and scores.shape == (len(X),) and np.isfinite(scores).all()
    np.testing.assert_array_equal(fitted.decision_function(X), scores - fitted.threshold_)
    np.testing.assert_array_equal(fitted.predict(X), (scores >= fitted.threshold_).astype(int))


def test_explanations_point_at_the_shifted_features(
    fitted: Detector, test_set: tuple[pd.DataFrame, np.ndarray, list]
) -> None:
    X, y, kinds = test_set
    anomalies = X[y == 1]
    explained = fitted.explain(anomalies)
    assert list(explained.columns) == list(X.columns) and explained.index.equals(anomalies.index)
    assert (explained.to_numpy() >= 0).all()
    top = explained.idxmax(axis=1)
    hits = [top[i] in SHIFTED[kinds[i]] for i in anomalies.index]
    assert np.mean(hits) >= 0.9
    importances = fitted.feature_importances(anomalies)
    assert importances.sum() == pytest.approx(1.0) and importances.is_monotonic_decreasing
    assert set(importances.index[:3]) <= set().union(*SHIFTED.values())
    overall = fitted.feature_importances()
    assert overall.sum() == pytest.approx(1.0) and set(overall.index) == set(X.columns)


def test_calibrate_resets_threshold(fitted: Detector, fresh_benign: pd.DataFrame) -> None:
    detector = pickle.loads(pickle.dumps(fitted))
    assert detector.calibrate(fresh_benign.iloc[:1000]) is detector
    assert detector.threshold_ == threshold_for_fpr(fitted.score_samples(fresh_benign.iloc[:1000]), 0.01)
    assert detector.predict(fresh_benign.iloc[:1000]).mean() <= 0.01
    assert detector.calibration_["n_benign_calibration"] == 1000


# ---------------------------------------------------------------------- determinism and pickling
@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_scores(name: str, train: tuple[pd.DataFrame, np.ndarray], test_set: tuple) -> None:
    params = {"max_iter": 50} if name == "boosted" else {"epochs": 15} if name == "autoencoder" else {}
    a = make_detector(name, random_state=7, **params).fit(*train)
    b = make_detector(name, random_state=7, **params).fit(*train)
    np.testing.assert_array_equal(a.score_samples(test_set[0]), b.score_samples(test_set[0]))
    assert a.threshold_ == b.threshold_


@pytest.mark.parametrize("name", ["iforest", "autoencoder"])
def test_different_seed_different_scores(name: str, train: tuple[pd.DataFrame, np.ndarray], test_set: tuple) -> None:
    params = {"epochs": 15} if name == "autoencoder" else {}
    a = make_detector(name, random_state=1, **params).fit(*train).score_samples(test_set[0])
    b = make_detector(name, random_state=2, **params).fit(*train).score_samples(test_set[0])
    assert not np.array_equal(a, b)


@pytest.mark.parametrize("dumps_loads", [(pickle.dumps, pickle.loads), (cloudpickle.dumps, pickle.loads)])
def test_pickle_round_trip_scores_identically(fitted: Detector, test_set: tuple, dumps_loads: tuple) -> None:
    dumps, loads = dumps_loads
    restored = loads(dumps(fitted))
    X = test_set[0]
    np.testing.assert_array_equal(restored.score_samples(X), fitted.score_samples(X))
    np.testing.assert_array_equal(restored.explain(X).to_numpy(), fitted.explain(X).to_numpy())
    assert restored.threshold_ == fitted.threshold_ and restored.get_params() == fitted.get_params()


def test_unpickled_autoencoder_scores_without_torch(train: tuple, test_set: tuple, tmp_path: Path) -> None:
    fitted = fitted_once("autoencoder", train)
    X = test_set[0].iloc[:50]
    (tmp_path / "model.pkl").write_bytes(pickle.dumps(fitted))
    X.to_pickle(tmp_path / "X.pkl")
    code = textwrap.dedent(
        f"""
        import pickle, sys
        import numpy as np, pandas as pd
        model = pickle.loads(open({str(tmp_path / "model.pkl")!r}, "rb").read())
        np.save({str(tmp_path / "scores.npy")!r}, model.score_samples(pd.read_pickle({str(tmp_path / "X.pkl")!r})))
        print("torch" in sys.modules)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    np.testing.assert_array_equal(np.load(tmp_path / "scores.npy"), fitted.score_samples(X))


# ---------------------------------------------------------------------- scikit-learn conventions
@pytest.mark.parametrize("name", NAMES)
def test_sklearn_conventions(name: str) -> None:
    detector = make_detector(name, target_fpr=0.05, random_state=3)
    params = detector.get_params()
    assert params["target_fpr"] == 0.05 and params["random_state"] == 3 and params["calibration_fraction"] == 0.25
    twin = clone(detector)
    assert twin is not detector and twin.get_params() == params
    assert twin.set_params(target_fpr=0.02) is twin and twin.target_fpr == 0.02
    assert detector.kind in {"unsupervised", "supervised"}
    assert not [k for k in vars(detector) if k.endswith("_")]  # nothing fitted in __init__
    X = make_windows(10, 0)[0]
    for method in ("score_samples", "predict", "decision_function", "explain", "feature_importances"):
        with pytest.raises(NotFittedError):
            getattr(detector, method)(X)


@pytest.mark.parametrize("name", NAMES)
def test_fit_returns_self_and_clone_is_unfitted(name: str) -> None:
    X, y, _ = make_windows(300, 30, seed=5)
    params = {"max_iter": 20} if name == "boosted" else {"epochs": 3} if name == "autoencoder" else {}
    detector = make_detector(name, **params)
    assert detector.fit(X, y) is detector
    assert list(detector.feature_names_in_) == list(X.columns) and detector.n_features_in_ == 12
    with pytest.raises(NotFittedError):
        clone(detector).score_samples(X)


# ---------------------------------------------------------------------- inputs
def test_ambiguous_and_anomalous_rows_are_dropped_for_unsupervised() -> None:
    X, y, _ = make_windows(400, 40, seed=6)
    y = y.copy()
    y[:20] = -1
    detector = IsolationForestDetector(n_estimators=20).fit(X, y)
    n_benign = int((y == 0).sum())
    cal = detector.calibration_
    assert cal["n_train"] + cal["n_benign_calibration"] == n_benign
    assert cal["n_benign_calibration"] == round(0.25 * n_benign)
    without_labels = IsolationForestDetector(n_estimators=20).fit(X[y == 0])
    np.testing.assert_array_equal(without_labels.score_samples(X), detector.score_samples(X))


def test_columns_by_name_missing_raise_and_nonfinite_values(fitted: Detector, test_set: tuple) -> None:
    X = test_set[0].iloc[:200]
    reordered = X[X.columns[::-1]].assign(tenant="t1")
    np.testing.assert_array_equal(fitted.score_samples(reordered), fitted.score_samples(X))
    with pytest.raises(SchemaError, match="missing feature column\\(s\\): bytes"):
        fitted.score_samples(X.drop(columns="bytes"))
    odd = X.copy()
    odd.iloc[:, :] = np.nan
    np.testing.assert_array_equal(fitted.score_samples(odd), fitted.score_samples(X * 0))
    huge = X.iloc[:1].copy()
    huge["remote_ports"] = np.inf
    huge["failed_ratio"] = 1.0
    assert np.isfinite(fitted.score_samples(huge)).all()
    assert fitted.score_samples(huge)[0] > fitted.score_samples(X.iloc[:1])[0]


def test_matrix_input_equals_frame_input(train: tuple[pd.DataFrame, np.ndarray], test_set: tuple) -> None:
    X, y = train
    by_frame = IsolationForestDetector(n_estimators=30).fit(X, y)
    by_matrix = IsolationForestDetector(n_estimators=30).fit(X.to_numpy(), y)
    assert list(by_matrix.feature_names_in_) == [f"x{i}" for i in range(12)]
    np.testing.assert_array_equal(by_matrix.score_samples(test_set[0].to_numpy()), by_frame.score_samples(test_set[0]))


@pytest.mark.parametrize(
    ("params", "match"),
    [({"target_fpr": 1.0}, "target_fpr"), ({"calibration_fraction": -0.1}, "calibration_fraction")],
)
def test_bad_common_params(params: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        IsolationForestDetector(**params).fit(make_windows(50, 0)[0])


def test_too_few_rows() -> None:
    with pytest.raises(NoUsableDataError, match="at least 2"):
        IsolationForestDetector().fit(make_windows(2, 0)[0])


def test_in_sample_calibration_when_fraction_is_zero() -> None:
    X = make_windows(300, 0, seed=8)[0]
    detector = IsolationForestDetector(n_estimators=20, calibration_fraction=0.0).fit(X)
    assert detector.calibration_["n_benign_calibration"] == 300 and "in-sample" in detector.calibration_["method"]


# ---------------------------------------------------------------------- supervised specifics
def test_boosted_needs_both_classes() -> None:
    X = make_windows(200, 20, seed=9)[0]
    with pytest.raises(NoUsableDataError, match="both benign"):
        BoostedDetector().fit(X, np.zeros(len(X)))
    with pytest.raises(NoUsableDataError, match="both benign"):
        BoostedDetector().fit(X, np.ones(len(X)))
    with pytest.raises(NoUsableDataError, match="needs labels"):
        BoostedDetector().fit(X)
    late = np.zeros(len(X))
    late[-10:] = 1  # every positive falls in the held-out calibration tail
    with pytest.raises(NoUsableDataError, match="calibration"):
        BoostedDetector(calibration="holdout").fit(X, late)
    oof = BoostedDetector(max_iter=20).fit(X, late)  # out of fold: the tail trains too
    assert oof.calibration_["n_train"] == len(X)


def test_boosted_holdout_calibration_uses_the_tail(train: tuple[pd.DataFrame, np.ndarray]) -> None:
    X, y = train
    det = BoostedDetector(calibration="holdout", max_iter=30).fit(X, y)
    tail = slice(len(X) - round(0.25 * len(X)), None)
    held_out = X.iloc[tail][y[tail] == 0]
    assert det.calibration_["n_train"] == len(X) - round(0.25 * len(X))
    assert det.threshold_ == threshold_for_fpr(det.score_samples(held_out), 0.01)
    with pytest.raises(ConfigError, match="calibration"):
        BoostedDetector(calibration="magic").fit(X, y)


def test_boosted_score_is_log_odds(train: tuple, test_set: tuple) -> None:
    fitted = fitted_once("boosted", train)
    X = test_set[0].iloc[:100]
    proba = fitted.predict_proba(X)[:, 1]
    np.testing.assert_allclose(1 / (1 + np.exp(-fitted.score_samples(X))), proba, rtol=1e-9)


# ---------------------------------------------------------------------- autoencoder specifics
def test_autoencoder_leaves_torch_global_state_alone() -> None:
    import torch

    X = make_windows(300, 0, seed=10)[0]
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    rng_state = torch.random.get_rng_state()
    detector = make_detector("autoencoder", epochs=2, n_threads=1).fit(X)
    assert torch.get_num_threads() == threads
    assert torch.are_deterministic_algorithms_enabled() == deterministic
    assert torch.equal(torch.random.get_rng_state(), rng_state)
    assert detector.device_ == "cpu" and detector.n_epochs_ == 2
    assert len(detector.loss_curve_) == 2 and len(detector.validation_loss_curve_) == 2


def test_autoencoder_numpy_forward_matches_torch() -> None:
    import torch

    X = make_windows(300, 0, seed=11)[0]
    detector = make_detector("autoencoder", epochs=3, hidden=(16, 4, 16), n_members=3).fit(X)
    assert len(detector.members_) == 3
    assert [w.shape for w in detector.weights_] == [(16, 12), (4, 16), (16, 4), (12, 16)]
    inputs = detector.inputs(X.to_numpy(np.float64))
    outputs = []
    for weights, biases in detector.members_:
        layers: list[torch.nn.Module] = []
        for i, (w, b) in enumerate(zip(weights, biases, strict=True)):
            linear = torch.nn.Linear(w.shape[1], w.shape[0]).double()
            linear.weight.data, linear.bias.data = torch.from_numpy(w), torch.from_numpy(b)
            layers += [linear] if i == len(weights) - 1 else [linear, torch.nn.ReLU()]
        with torch.no_grad():
            outputs.append(torch.nn.Sequential(*layers)(torch.from_numpy(inputs)).numpy())
    assert not np.allclose(outputs[0], outputs[1])  # members differ (own seeds)
    residual = inputs - np.mean(outputs, axis=0)  # the ensemble reconstructs with its members' mean
    expected = np.maximum(residual, 0.0).max(axis=1)  # largest excess surprise
    np.testing.assert_allclose(detector.score_samples(X), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"device": "tpu"}, "device must be"),
        ({"hidden": ()}, "hidden"),
        ({"hidden": (8, 0)}, "hidden"),
        ({"epochs": 0}, "epochs"),
        ({"validation_fraction": 1.0}, "validation_fraction"),
    ],
)
def test_autoencoder_bad_params(params: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        make_detector("autoencoder", **{"epochs": 1, **params}).fit(make_windows(60, 0)[0])


def test_autoencoder_cuda_when_unavailable() -> None:
    import torch

    X = make_windows(60, 0)[0]
    assert (
        make_detector("autoencoder", epochs=1, device="auto")
        .fit(X)
        .device_.startswith("cuda" if torch.cuda.is_available() else "cpu")
    )
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(ConfigError, match="CUDA is not available"):
        make_detector("autoencoder", epochs=1, device="cuda").fit(X)


def test_boosted_monotonic_constraints_hold_beyond_the_training_range() -> None:
    rng = np.random.default_rng(3)
    X = pd.DataFrame({"retx": rng.exponential(1.0, 600), "noise": rng.normal(0, 1, 600)})
    y = ((X["retx"] > 2.0) & (X["retx"] < 4.0)).astype(int).to_numpy()  # no positive above 4 in training
    free = BoostedDetector(max_iter=60).fit(X, y)
    tied = BoostedDetector(max_iter=60, monotonic={"retx": 1}).fit(X, y)
    grid = pd.DataFrame({"retx": np.linspace(0, 50, 200), "noise": 0.0})
    assert (np.diff(tied.score_samples(grid)) >= -1e-9).all()  # never healthier for more retransmissions
    assert (np.diff(free.score_samples(grid)) < -1e-6).any()  # unconstrained, it falls past the training hump
    with pytest.raises(ConfigError, match="unknown feature"):
        BoostedDetector(monotonic={"nope": 1}).fit(X, y)
