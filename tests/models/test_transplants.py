"""Context transplants (netsentry.pipeline.train.transplants): evidence moved into benign context, nothing else."""

from __future__ import annotations

import numpy as np
import pandas as pd

from netsentry.pipeline.train.transplants import context_transplants


def table() -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"scan": rng.uniform(0, 1, 40), "share": rng.uniform(0, 0.3, 40), "role": rng.uniform(0, 9, 40)})
    y = np.zeros(40, np.int64)
    X.loc[[5, 30], ["scan", "share"]] = [[500.0, 1.0], [400.0, 1.0]]
    y[[5, 30]] = 1
    X.loc[31, "role"] = 4.5  # a positive without out-of-range evidence
    y[31] = 1
    return X, y


def test_copies_carry_evidence_in_benign_context() -> None:
    X, y = table()
    Xa, ya = context_transplants(X, y, copies=3, keep=1.0, blocks=2, seed=1)
    assert len(Xa) == len(X) + 2 * 3 and ya.sum() == y.sum() + 6  # no copies of the evidence-less positive
    copies = Xa.iloc[20:23]  # right after the first block's 20 rows
    assert (copies["scan"] == 500.0).all() and (copies["share"] == 1.0).all()
    benign_roles = set(X.loc[(y == 0) & (np.arange(40) < 20), "role"])
    assert set(copies["role"]) <= benign_roles  # context drawn from benign rows of the same block
    pd.testing.assert_frame_equal(Xa.iloc[: len(X) // 2], X.iloc[: len(X) // 2])  # originals kept, in order


def test_evidence_columns_and_dropout() -> None:
    X, y = table()
    Xa, _ = context_transplants(X, y, copies=5, keep=1.0, blocks=1, seed=0, evidence_columns=["scan"])
    extra = Xa.iloc[len(X) :]
    assert len(extra) == 10 and (extra["scan"] >= 400).all() and (extra["share"] <= 0.3).all()  # share: context
    Xb, yb = context_transplants(X, y, copies=50, keep=0.5, blocks=1, seed=0)
    extra = Xb.iloc[len(X) :]
    assert len(extra) == 100 and (yb[len(X) :] == 1).all()
    kept_scan = extra["scan"] >= 400
    kept_share = extra["share"] == 1.0
    assert (kept_scan | kept_share).all()  # at least one piece of evidence in every copy
    assert (~kept_scan).any() and (~kept_share).any()  # but not always all of it
    assert context_transplants(X, y, copies=0)[0] is X


def test_context_negatives_are_the_entity_without_the_evidence() -> None:
    X, y = table()
    groups = np.where(np.arange(40) % 2 == 0, "even", "odd")  # row 30 (positive) is "even", row 5 "odd"
    Xa, ya = context_transplants(X, y, copies=1, keep=1.0, blocks=2, seed=0, negatives=3, groups=groups)
    assert len(Xa) == len(X) + 2 * (1 + 3) and ya.sum() == y.sum() + 2
    negatives = Xa.iloc[len(X) // 2 + 1 : len(X) // 2 + 4]  # after the first block and its one transplant
    assert (ya[len(X) // 2 + 1 : len(X) // 2 + 4] == 0).all()
    odd_benign = X[(y == 0) & (np.arange(40) % 2 == 1)]
    assert set(negatives["scan"]) <= set(odd_benign["scan"]) and set(negatives["share"]) <= set(odd_benign["share"])
    assert (negatives["role"] == X.loc[5, "role"]).all()  # the positive's own context, evidence replaced
    plain, _ = context_transplants(X, y, copies=1, keep=1.0, blocks=2, seed=0, negatives=3)
    assert len(plain) == len(X) + 2  # without entities, no context negatives


def test_anchored_copies_always_carry_the_strongest_evidence() -> None:
    """A side effect (share just past the benign range) never stands alone; the defining evidence (scan) does."""
    X, y = table()
    Xa, ya = context_transplants(X, y, copies=40, keep=0.5, blocks=1, seed=0, anchored=True)
    extra, labels = Xa.iloc[len(X) :], ya[len(X) :]
    assert len(extra) == 80 and (labels == 1).all()
    assert (extra["scan"] >= 400).all()  # the strongest evidence is in every copy
    assert (extra["share"] == 1.0).any() and (extra["share"] < 1.0).any()  # the rest still drops out
    firsts = extra.iloc[[0, 40]]  # each positive's first copy: the strongest evidence alone
    assert (firsts["share"] <= 0.3).all() and (firsts["scan"] >= 400).all()
    plain, _ = context_transplants(X, y, copies=40, keep=0.5, blocks=1, seed=0)
    assert (plain.iloc[len(X) :]["scan"] < 400).any()  # unanchored: any piece may be dropped


def test_unqualified_negatives_carry_the_count_without_its_qualifier() -> None:
    """Connections to a login port are evidence of guessing when short: the count alone, in the VM's own benign
    context, is a benign row."""
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"logins": rng.uniform(0, 2, 40), "short": rng.uniform(0, 1, 40), "role": rng.uniform(0, 9, 40)})
    y = np.zeros(40, np.int64)
    X.loc[7, ["logins", "short"]] = [60.0, 58.0]
    y[7] = 1
    groups = np.where(np.arange(40) % 2 == 0, "even", "odd")  # row 7 is "odd"
    Xa, ya, made = context_transplants(
        X, y, copies=1, keep=1.0, blocks=1, seed=0, negatives=2, groups=groups, return_synthetic=True,
        qualified=((("logins",), ("short",)),),
    )  # fmt: skip
    assert len(Xa) == len(X) + 1 + 2 + 2 and made[len(X) :].all() and ya.sum() == 2
    unqualified = Xa.iloc[len(X) + 1 : len(X) + 3]
    assert (ya[len(X) + 1 : len(X) + 3] == 0).all()
    assert (unqualified["logins"] == 60.0).all() and (unqualified["short"] < 1).all()  # the count, not the guesses
    odd_benign = X[(y == 0) & (np.arange(40) % 2 == 1)]
    assert set(unqualified["role"]) <= set(odd_benign["role"])  # the VM's own benign context
    no_qualifier = X.copy()
    no_qualifier.loc[7, "short"] = 0.5  # the logins are sessions: no unqualified negatives to make
    Xb, _ = context_transplants(no_qualifier, y, copies=1, keep=1.0, blocks=1, seed=0, negatives=2, groups=groups,
                                qualified=((("logins",), ("short",)),))  # fmt: skip
    assert len(Xb) == len(X) + 1 + 2
