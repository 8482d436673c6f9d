"""RobustLogScaler: known answers, column matching, NaN/inf handling."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from netsentry.models.scaling import RobustLogScaler, TailSurprise, as_feature_matrix, sanitize, signed_log1p
from netsentry.pipeline.core.errors import SchemaError

E = math.e


@pytest.fixture
def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "counts": [0, 1, 3, 7, 15],  # log1p = k*ln2, k = 0..4: median 2ln2, IQR 2ln2
            "signed": [-3.0, -1.0, 0.0, 1.0, 3.0],  # sign*log1p = -2ln2, -ln2, 0, ln2, 2ln2: median 0, IQR 2ln2
            "constant": [5, 5, 5, 5, 5],  # IQR 0 and std 0 -> scale 1
            "spike": [0.0, 0.0, 0.0, 0.0, E - 1],  # log1p = 0,0,0,0,1: IQR 0 -> std 0.4
        }
    )


def test_known_answers(frame: pd.DataFrame) -> None:
    scaler = RobustLogScaler().fit(frame)
    np.testing.assert_allclose(scaler.center_, [2 * math.log(2), 0.0, math.log(6), 0.0])
    np.testing.assert_allclose(scaler.scale_, [2 * math.log(2), 2 * math.log(2), 1.0, 0.4])
    expected = np.array(
        [
            [-1.0, -1.0, 0.0, 0.0],
            [-0.5, -0.5, 0.0, 0.0],
            [0.0, 0.0, 0.0, 0.0],
            [0.5, 0.5, 0.0, 0.0],
            [1.0, 1.0, 0.0, 2.5],
        ]
    )
    out = scaler.transform(frame)
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, expected, atol=1e-12)
    assert list(scaler.feature_names_in_) == list(frame.columns)
    assert scaler.n_features_in_ == 4
    assert list(scaler.get_feature_names_out()) == list(frame.columns)


def test_clipping(frame: pd.DataFrame) -> None:
    far = pd.DataFrame({"counts": [1e9], "signed": [-1e9], "constant": [5], "spike": [0.0]})
    np.testing.assert_allclose(RobustLogScaler().fit(frame).transform(far)[0, :2], [10.0, -10.0])
    np.testing.assert_allclose(RobustLogScaler(clip=2.0).fit(frame).transform(frame)[4, 3], 2.0)
    unclipped = RobustLogScaler(clip=None).fit(frame).transform(far)[0, 0]
    assert unclipped == pytest.approx((math.log1p(1e9) - 2 * math.log(2)) / (2 * math.log(2)))


def test_nan_is_zero_and_inf_is_large(frame: pd.DataFrame) -> None:
    scaler = RobustLogScaler().fit(frame)
    odd = pd.DataFrame(
        {"counts": [np.nan, np.inf], "signed": [np.nan, -np.inf], "constant": [np.nan, 5], "spike": [np.inf, np.nan]}
    )
    zeros = pd.DataFrame({c: [0.0] for c in frame.columns})
    out = scaler.transform(odd)
    np.testing.assert_allclose(out[0, :3], scaler.transform(zeros)[0, :3])
    np.testing.assert_allclose(out[1], [10.0, -10.0, 0.0, 0.0])
    assert out[0, 3] == 10.0
    assert np.isfinite(out).all()
    # fitting on non-finite values works too, and gives finite statistics
    fitted = RobustLogScaler().fit(odd)
    assert np.isfinite(fitted.center_).all() and np.isfinite(fitted.scale_).all()


def test_sanitize_and_signed_log() -> None:
    out = sanitize(np.array([np.nan, np.inf, -np.inf, 2.0]))
    assert out[0] == 0.0 and out[1] == np.finfo(np.float64).max and out[2] == -np.finfo(np.float64).max
    np.testing.assert_allclose(signed_log1p(np.array([-1.0, 0.0, E - 1])), [-math.log(2), 0.0, 1.0])
    assert np.isfinite(signed_log1p(out)).all()


def test_columns_matched_by_name(frame: pd.DataFrame) -> None:
    scaler = RobustLogScaler().fit(frame)
    shuffled = frame[["spike", "constant", "counts", "signed"]].assign(extra="ignored")
    np.testing.assert_array_equal(scaler.transform(shuffled), scaler.transform(frame))


def test_missing_columns_raise_schema_error_naming_them(frame: pd.DataFrame) -> None:
    scaler = RobustLogScaler().fit(frame)
    with pytest.raises(SchemaError, match="missing feature column\\(s\\): counts, spike"):
        scaler.transform(frame.drop(columns=["spike", "counts"]))


def test_matrix_input(frame: pd.DataFrame) -> None:
    scaler = RobustLogScaler().fit(frame)
    np.testing.assert_array_equal(scaler.transform(frame.to_numpy()), scaler.transform(frame))
    with pytest.raises(SchemaError, match="expected 4 feature columns, got 3"):
        scaler.transform(frame.to_numpy()[:, :3])
    from_matrix = RobustLogScaler().fit(frame.to_numpy())
    assert list(from_matrix.feature_names_in_) == ["x0", "x1", "x2", "x3"]
    np.testing.assert_array_equal(from_matrix.transform(frame.to_numpy()), scaler.transform(frame))


def test_bad_tables_raise_schema_error(frame: pd.DataFrame) -> None:
    with pytest.raises(SchemaError, match="non-numeric feature column\\(s\\): name"):
        RobustLogScaler().fit(frame.assign(name=["a", "b", "c", "d", "e"]))
    with pytest.raises(SchemaError, match="empty"):
        RobustLogScaler().fit(frame.iloc[:0])
    with pytest.raises(SchemaError, match="2-D"):
        as_feature_matrix(np.arange(3.0))
    with pytest.raises(SchemaError, match="duplicate"):
        RobustLogScaler().fit(pd.concat([frame, frame[["counts"]]], axis=1))


def test_nullable_and_bool_columns() -> None:
    df = pd.DataFrame({"n": pd.array([1, None, 3], dtype="Int64"), "b": [True, False, True]})
    np.testing.assert_array_equal(as_feature_matrix(df), [[1.0, 1.0], [0.0, 0.0], [3.0, 1.0]])


def test_sklearn_conventions(frame: pd.DataFrame) -> None:
    scaler = RobustLogScaler(clip=3.0)
    assert scaler.fit(frame) is scaler
    assert clone(scaler).get_params() == {"clip": 3.0}
    with pytest.raises(NotFittedError):
        RobustLogScaler().transform(frame)
    out = RobustLogScaler().set_output(transform="pandas").fit_transform(frame)
    assert isinstance(out, pd.DataFrame) and list(out.columns) == list(frame.columns)


def test_tail_surprise_known_answers() -> None:
    ref = pd.DataFrame({"sparse": [0, 0, 0, 1], "count": [1, 2, 3, 4]})
    out = TailSurprise().fit(ref).transform(pd.DataFrame({"sparse": [0, 1, 3], "count": [0, 3, 9]}))
    # -log((1 + values at or above x) / (n + 1)), n = 4; past the max + log1p(x) - log1p(max)
    expected = np.array(
        [
            [0.0, 0.0],
            [math.log(5 / 2), math.log(5 / 3)],
            [math.log(5) + math.log(4 / 2), math.log(5) + math.log(10 / 5)],
        ]
    )
    np.testing.assert_allclose(out, expected, rtol=1e-12)


def test_tail_surprise_order_statistics_approximate_the_full_reference() -> None:
    ref = np.random.default_rng(0).exponential(size=(5000, 2))
    query = np.linspace(0.0, 3.0, 50)[:, None].repeat(2, axis=1)  # where 500 order statistics resolve the tail
    full = TailSurprise(max_reference=10_000).fit(ref).transform(query)
    thin = TailSurprise(max_reference=500).fit(ref).transform(query)
    assert thin.shape == full.shape and (full >= 0).all()
    np.testing.assert_allclose(thin, full, atol=0.05)
