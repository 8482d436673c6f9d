"""Detection quality with floors: the simulated ``mixed`` cloud (time split), and transfer of the models trained on
it to real captures from ../shared/data (attacker hosts flagged, no host of a benign trace flagged).

The ``mixed`` floors below sit just under what the detectors reach (measured values in the comments; their history
in docs/experiments.md#quality-floors). The transfer assertions are issue 5's own.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from netsentry.pipeline.core.tracking import Tracker
from netsentry.pipeline.inspect.compromise import require_support
from netsentry.pipeline.train.evaluate import fit_and_evaluate
from netsentry.pipeline.train.options import TrainOptions
from tests.conftest import ATTACKERS, BENIGN, FAULT_FREE, FAULTY

pytestmark = pytest.mark.xdist_group("mixed")  # shares the session's mixed workspace and models


def scores_by_host(model: object, ws: Path) -> pd.Series:
    """Per host, whether any of its windows is a verdict: flagged, with the support inspect requires (a window of
    one connection in a one-second capture is reported as not judged, not as a finding)."""
    tw = pd.read_parquet(ws / "features" / "tenant_windows")
    pred = model.predict(tw)  # type: ignore[attr-defined]
    scored, _ = require_support(tw.assign(flag=pred["flag"].to_numpy(), scope=tw["ip"].to_numpy()))
    return pd.Series(scored["flag"].to_numpy(), index=tw["ip"].to_numpy()).groupby(level=0).max()


@pytest.mark.slow
def test_mixed_supervised_compromise_floor(trained: dict) -> None:
    """Issue 15 asks ROC-AUC >= 0.99, TPR >= 0.95 and recall >= 0.9 per type on the richer world; TPR and the
    brute force's recall are not met yet: these are today's values (seed 0, 25-minute mixed with drawn episodes) as a
    ratchet. The threshold calibrated on the training part gives 1.7 % FPR on the test part (target 1 %). A beacon's
    windows count from its first judgeable gap (docs/experiments.md, 2026-12-07 e); gateway configuration changes and
    floods from real sources are in the world since section g, load balancers' health checks since section j."""
    res = trained["compromise"]
    assert res.model_name == "boosted"
    # measured 0.989 (seeds 1, 2: 0.987, 0.989; section h: 0.986, 0.992, 0.989; 0.993, 0.990, 0.988 before g)
    assert res.metrics["roc_auc"] >= 0.98
    # measured 0.950 (seeds 1 and 2: 0.936, 0.934; section h: 0.938, 0.966, 0.948; 0.926, 0.928, 0.924 before g)
    assert res.metrics["tpr_at_0.01_fpr"] >= 0.93
    assert res.metrics["fpr"] <= 0.025  # measured 0.010 (seeds 1, 2: 0.006, 0.002)
    every = ("lateral_movement", "port_scan_horizontal", "port_scan_vertical", "ddos_syn", "ddos_udp", "reflection")
    for scenario in every:
        assert res.recall_by_scenario[scenario] >= 0.99, scenario  # measured 1.0 each
    assert res.recall_by_scenario["ssh_bruteforce"] >= 0.95  # measured 0.969
    assert res.recall_by_scenario["crypto_mining"] >= 0.95  # measured 0.983 (the pool's JSON-RPC methods)
    assert res.recall_by_scenario["dns_tunnel"] >= 0.95  # measured 1.0
    # measured 0.873 (eleven services; 0.827, 0.745 seeds 1, 2; section h: 0.873, 0.882, 0.864): a guess and a health
    # check are both a short exchange repeated from one address to one port
    assert res.recall_by_scenario["bruteforce"] >= 0.85
    # sweeps of the VPC, seen at the VM tap only: named by the VM's MAC there (0.75 and 0.667 without)
    assert res.recall_by_scenario["ping_sweep"] >= 0.95  # measured 1.0
    assert res.recall_by_scenario["udp_sweep"] >= 0.95  # measured 1.0
    # measured 0.75 (16 windows; 0.5625, 0.75 seeds 1, 2; section h 0.75, 0.625, 0.5625; 0.9375, 1.0, 0.875 before
    # section g): initech-web-2's 181 MB over 22/tcp scores within 1 of the threshold, so its windows flip with any
    # change of the training data
    assert res.recall_by_scenario["exfiltration"] >= 0.7
    # measured 1.0 on every seed; 0.592 when the windows before a beacon's 5th check-in were counted as misses
    assert res.recall_by_scenario["c2_beacon"] >= 0.95


@pytest.mark.slow
def test_mixed_unsupervised_compromise_floor(mixed: Path) -> None:
    df = pd.read_parquet(mixed / "features" / "tenant_windows")
    ev = fit_and_evaluate(df, TrainOptions(kind="compromise", model="iforest")).evaluation
    assert ev is not None and ev.metrics["roc_auc"] >= 0.80  # measured 0.813
    ev = fit_and_evaluate(df, TrainOptions(kind="compromise", model="autoencoder")).evaluation
    assert ev is not None and ev.metrics["roc_auc"] >= 0.94  # measured 0.956


@pytest.mark.slow
def test_mixed_fault_floor(trained: dict) -> None:
    res = trained["faults"]
    # issue 15 asks >= 0.95: met on the hand-written faults alone (0.968); with drawn faults in the test part it read
    # 0.918, and 0.945 since a client's retries of a silent service are counted over 30 s (silent_server 0 -> 0.787);
    # 0.943 with fan-out in the benign world (microburst 0.6 -> 1.0: its sources' bursts are everyday traffic now),
    # 0.946 (seeds 1, 2: 0.952, 0.950) with Karn's rule on handshake RTTs and the retried handshakes as loss; the
    # calibrated threshold moved from 1.11 to 1.85 (silent_server 0.787 -> 0.467 there, 0.613 at 1 % FPR). Section g:
    # 0.924 (seeds 1, 2: 0.929, 0.924) with gateway configuration changes (15 test windows, mostly VMs whose few
    # internet connections fail amid their in-cloud traffic) and floods from real sources, whose windows count as
    # normal for the fault model. Section h: 0.927 (seeds 1, 2: 0.924, 0.927) with subnets' router addresses on the
    # gateway host; section j: 0.931 (seeds 1, 2: 0.938, 0.934) with load balancers' health checks; section k: 0.961
    # (seeds 1, 2: 0.957, 0.954) once a window the fault covers for under half of it, or a partial loss on a scope
    # too quiet to lose 3 packets, is ambiguous instead of faulty
    assert res.metrics["roc_auc"] >= 0.95  # measured 0.961
    assert res.recall_by_scenario["blackhole"] >= 0.85  # measured 0.889
    assert res.recall_by_scenario["microburst"] >= 0.6  # measured 1.0 (3 windows; 0.667, 1.0 seeds 1, 2; j: 0.6)
    # measured 0.714 (0.476 seeds 1, 2; 0.955 in j): both training storms strike one VM, and acme-db-1's test storm
    # scores within 0.5 of the threshold; see docs/experiments.md section k (more drawn storms: 1.0)
    assert res.recall_by_scenario["rst_storm"] >= 0.45
    assert res.recall_by_scenario["silent_server"] >= 0.3  # measured 0.493 (75 windows, every seed)
    assert res.recall_by_scenario["loss_burst"] >= 0.7  # measured 0.779 every seed (0.655 in j; 140 windows)
    assert res.recall_by_scenario["latency_spike"] >= 0.8  # measured 0.967 (0.901, 0.835 seeds 1, 2; 0.773 in j)
    assert res.recall_by_scenario["config_change"] >= 0.06  # measured 0.077 on every seed (13 windows)


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
