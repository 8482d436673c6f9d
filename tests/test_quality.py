"""Detection quality with floors: the simulated ``mixed`` cloud (time split), and transfer of the models trained on
it to real captures from ../shared/data (attacker hosts flagged, no host of a benign trace flagged).

The ``mixed`` floors below sit just under what the detectors reach (measured values in the comments). Issue 5's
targets: supervised ROC-AUC 0.99 (met) with TPR 0.9 at 1 % FPR (not met: 0.768), unsupervised 0.95 (met by the
autoencoder), faults 0.95 (met). The transfer assertions are the issue's own.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.tracking import Tracker
from pipeline.train import TrainOptions, fit_and_evaluate
from tests.conftest import ATTACKERS, BENIGN, FAULT_FREE, FAULTY

pytestmark = pytest.mark.xdist_group("mixed")  # shares the session's mixed workspace and models


def scores_by_host(model: object, ws: Path) -> pd.Series:
    tw = pd.read_parquet(ws / "features" / "tenant_windows")
    pred = model.predict(tw)  # type: ignore[attr-defined]
    return pd.Series(pred["flag"].to_numpy(), index=tw["ip"].to_numpy()).groupby(level=0).max()


@pytest.mark.slow
def test_mixed_supervised_compromise_floor(trained: dict) -> None:
    res = trained["compromise"]
    assert res.model_name == "boosted"
    # before context transplants and the idle-connection and relayed-DNS features: 0.938 and 0.48; before context
    # negatives 0.989 and 0.718 (seeds 0-4: ROC-AUC 0.9896-0.9918, TPR 0.641-0.873)
    assert res.metrics["roc_auc"] >= 0.99  # measured 0.9916
    assert res.metrics["tpr_at_0.01_fpr"] >= 0.75  # measured 0.768
    assert res.metrics["fpr"] <= 0.03  # measured 0.009
    for scenario in ("ssh_bruteforce", "lateral_movement", "port_scan_horizontal", "c2_beacon"):
        assert res.recall_by_scenario[scenario] >= 0.5, scenario
    for scenario in ("ddos_syn", "ddos_udp"):  # measured 1.0 (ddos_syn 0.46 and ddos_udp 0 before transplants)
        assert res.recall_by_scenario[scenario] >= 0.9, scenario
    assert res.recall_by_scenario["dns_tunnel"] >= 0.7  # measured 0.76 (0.82 before context negatives)


@pytest.mark.slow
def test_mixed_unsupervised_compromise_floor(mixed: Path) -> None:
    df = pd.read_parquet(mixed / "features" / "tenant_windows")
    ev = fit_and_evaluate(df, TrainOptions(kind="compromise", model="iforest")).evaluation
    # tail-surprise inputs (and, for the autoencoder, the largest excess surprise as score); before: 0.789 and 0.890
    assert ev is not None and ev.metrics["roc_auc"] >= 0.84  # measured 0.846 (seed 1: 0.848)
    ev = fit_and_evaluate(df, TrainOptions(kind="compromise", model="autoencoder")).evaluation
    # five networks averaged: measured 0.957 (seeds 1-4: 0.955 0.968 0.953 0.967; one network: 0.935-0.966)
    assert ev is not None and ev.metrics["roc_auc"] >= 0.95


@pytest.mark.slow
def test_mixed_fault_floor(trained: dict) -> None:
    res = trained["faults"]
    # 0.810 before transplants, quiet VM rows ambiguous and reset_connections (rst_storm recall was 0); 0.929 before
    # hop delay and loss on VM rows, udp_unanswered and hop_delay_hop_ratio; 0.951 (seed 1: 0.937) before VNIs of
    # packets seen outside the overlay
    assert res.metrics["roc_auc"] >= 0.955  # measured 0.957 (seed 1: 0.946)
    assert res.recall_by_scenario["blackhole"] >= 0.5 and res.recall_by_scenario["microburst"] >= 0.5
    assert res.recall_by_scenario["rst_storm"] >= 0.9  # measured 1.0


@pytest.mark.slow
@pytest.mark.shared
def test_simulation_trained_models_transfer_to_real_captures(mixed: Path, trained: dict, real: dict[str, Path]) -> None:
    # through the Tracker: mlflow's global registry URI may point at another test's store
    store = Tracker(mixed, trained["compromise"].tracking_uri)
    model = store.load_model("models:/netsentry-compromise@champion")
    for rel, attacker in ATTACKERS.items():
        flags = scores_by_host(model, real[rel])
        assert flags.get(attacker, 0) == 1, f"{rel}: {attacker} not flagged"
    for rel in BENIGN:
        flags = scores_by_host(model, real[rel])
        assert flags.sum() == 0, f"{rel}: flagged {list(flags[flags == 1].index)}"
    faults = store.load_model("models:/netsentry-faults@champion")
    for rel in FAULTY:
        fw = pd.read_parquet(real[rel] / "features" / "fault_windows")
        flag = faults.predict(fw)["flag"].to_numpy() == 1
        assert flag.any(), f"{rel}: no fault window flagged"
        assert (fw.loc[flag, "retransmissions"].to_numpy() > 0).all(), f"{rel}: flagged windows without retransmissions"
    for rel in FAULT_FREE:
        fw = pd.read_parquet(real[rel] / "features" / "fault_windows")
        assert not np.any(faults.predict(fw)["flag"].to_numpy() == 1), rel
