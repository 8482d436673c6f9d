"""Ambient impairments of internet paths: sporadic loss and reordering that are not faults.

Why: real internet paths lose ~0.01–0.5 % of packets and reorder a few; a detector that never saw a
single retransmission calls the first one a fault. Each internet peer's path gets its own rates, lognormal
across paths with the stated range as ±2σ (loss: median 0.07 %, σ 1.0, clipped to [0.01 %, 0.5 %];
reordering: median 0.1 % of data segments, σ 1.0, clipped to 1 %). Paths between VMs of the cloud stay
clean (a data-centre fabric drops far less). Fault labels are untouched: ambient loss is not an event.
"""

from __future__ import annotations

import numpy as np

from netsentry.pipeline.simulate.conns import ConnTable
from netsentry.pipeline.simulate.events import SimContext

LOSS_MEDIAN, LOSS_SIGMA, LOSS_MIN, LOSS_MAX = 7e-4, 1.0, 1e-4, 5e-3
REORDER_MEDIAN, REORDER_SIGMA, REORDER_MAX = 1e-3, 1.0, 1e-2


def with_ambient_impairments(ctx: SimContext, conns: ConnTable) -> ConnTable:
    """``conns`` with ``ambient_loss_p`` and ``reorder_p`` set per internet path (one draw per peer)."""
    cvm, svm = conns["client_vm"], conns["server_vm"]
    internet = (cvm < 0) ^ (svm < 0)
    peer = np.where(cvm < 0, conns["client"], conns["server"])[internet]
    uniq, inv = np.unique(peer, return_inverse=True)
    rng = ctx.rng
    loss = np.clip(rng.lognormal(np.log(LOSS_MEDIAN), LOSS_SIGMA, len(uniq)), LOSS_MIN, LOSS_MAX)
    reorder = np.clip(rng.lognormal(np.log(REORDER_MEDIAN), REORDER_SIGMA, len(uniq)), 0.0, REORDER_MAX)
    cols = dict(conns.cols)
    cols["ambient_loss_p"] = np.zeros(len(conns), np.float32)
    cols["reorder_p"] = np.zeros(len(conns), np.float32)
    cols["ambient_loss_p"][internet] = loss[inv]
    cols["reorder_p"][internet] = reorder[inv]
    return ConnTable(cols)
