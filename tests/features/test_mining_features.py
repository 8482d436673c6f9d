"""Mining features per tenant window: stratum calls on connections the VM opened, either direction, per minute,
and the distinct pools; a VM that answers mining calls as the server, or a workspace without a stratum table,
reads zero."""

from __future__ import annotations

import numpy as np
import pytest

from netsentry.pipeline.capture.mining import stratum_table
from netsentry.pipeline.core.schemas import STRATUM_JOB, STRATUM_SUBMIT, ip16_from_text
from netsentry.pipeline.features.tenant.windows import WindowSpec, tenant_windows
from tests.features.test_tenant_windows import NS, T0, flow, flows_table, row

MINER, OTHER, POOL_A, POOL_B, RIG = "10.0.0.1", "10.0.0.2", "203.0.113.9", "198.51.100.7", "192.0.2.44"


def messages(rows: list[tuple[float, str, str, int, int, int]]):
    """(second, src, dst, sport, dport, method) rows → a stratum table seen at the ``vm`` capture point."""
    n = len(rows)
    cols = {
        "ts_ns": np.array([T0 + int(r[0] * NS) for r in rows], np.int64),
        "vni": np.zeros(n, np.uint32),
        "ip_version": np.full(n, 4, np.uint8),
        "src_ip": ip16_from_text([r[1] for r in rows]),
        "dst_ip": ip16_from_text([r[2] for r in rows]),
        "src_port": np.array([r[3] for r in rows], np.uint16),
        "dst_port": np.array([r[4] for r in rows], np.uint16),
        "method": np.array([r[5] for r in rows], np.uint8),
    }
    return stratum_table(cols, "vm")


def scenario():
    rows = [
        flow(MINER, POOL_A, 3333, 0.0, dur_s=59.0),  # the miner's pool sessions (client port 40000)
        flow(MINER, POOL_B, 4444, 5.0, dur_s=50.0),
        flow(RIG, OTHER, 3333, 1.0, dur_s=58.0),  # OTHER serves a pool: its calls are not on a connection it opened
        flow(OTHER, "8.8.8.8", 53, 59.0, dur_s=1.0, proto=17, sp=1, dp=1),  # ends the capture at 60 s
    ]
    calls = [(s, MINER, POOL_A, 40000, 3333, STRATUM_SUBMIT) for s in (10.0, 20.0, 30.0)]
    calls += [(s, POOL_A, MINER, 3333, 40000, STRATUM_JOB) for s in (11.0, 31.0, 50.0)]
    calls += [(6.0, MINER, POOL_B, 40000, 4444, STRATUM_SUBMIT), (7.0, POOL_B, MINER, 4444, 40000, STRATUM_JOB)]
    calls += [(s, RIG, OTHER, 40000, 3333, STRATUM_SUBMIT) for s in (2.0, 3.0, 4.0)]
    return flows_table(rows), messages(calls)


def test_known_counts_per_window() -> None:
    flows, stratum = scenario()
    tw = tenant_windows(flows, WindowSpec(60, 60), stratum=stratum)
    miner, other = row(tw, "acme-web-1"), row(tw, "acme-db-1")
    assert miner["mining_messages_out_per_min"] == pytest.approx(8.0)  # 8 calls in 60 observed seconds
    assert miner["mining_pools_out"] == 2
    assert other["mining_messages_out_per_min"] == 0 and other["mining_pools_out"] == 0


def test_sliding_windows_count_each_call_where_it_falls() -> None:
    flows, stratum = scenario()
    tw = tenant_windows(flows, WindowSpec(20, 20), stratum=stratum)
    per_window = [row(tw, "acme-web-1", s)[["mining_messages_out_per_min", "mining_pools_out"]].tolist()
                  for s in (0.0, 20.0, 40.0)]  # fmt: skip
    assert per_window == [[pytest.approx(4 * 3.0), 2], [pytest.approx(3 * 3.0), 1], [pytest.approx(1 * 3.0), 1]]


def test_without_a_stratum_table_the_features_read_zero() -> None:
    flows, _ = scenario()
    tw = tenant_windows(flows, WindowSpec(60, 60))
    assert (tw["mining_messages_out_per_min"] == 0).all() and (tw["mining_pools_out"] == 0).all()
