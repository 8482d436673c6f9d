"""Mining-protocol features per (entity, window) from the ``stratum`` table: a pool session is one quiet client
connection to every flow feature, but its messages name the mining protocol.

A message counts for the entity that opened its connection: the entity is one end (matched on address, capture
point and VNI at its main capture point) and has an outgoing flow to the other end's address and port. Each
message counts in every window it falls in, either direction (shares sent, jobs pushed).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from netsentry.pipeline.core.schemas import ip_text
from netsentry.pipeline.features.tenant.dns import in_windows

_KEYS = ["entity_id", "window_id"]
MINING_FEATURES = ("mining_messages_out_per_min", "mining_pools_out")
"""Features only the stratum table gives (0 in a workspace without one, or from the pyshark engine)."""


def _messages(stratum: pa.Table) -> pd.DataFrame:
    """Each message twice, from its sender (``ip`` = source) and from its receiver, with the other end as
    ``remote``/``port``."""
    t = stratum.select(["ts_ns", "capture_point", "vni", "src_ip", "dst_ip", "src_port", "dst_port"])
    base = pd.DataFrame({"ts_ns": t.column("ts_ns").to_numpy(), "vni": t.column("vni").to_numpy()})
    base["capture_point"] = np.asarray(t.column("capture_point").cast(pa.string()).to_pylist(), dtype=object)
    src, dst = ip_text(t.column("src_ip")), ip_text(t.column("dst_ip"))
    sport = t.column("src_port").to_numpy().astype(np.int32)
    dport = t.column("dst_port").to_numpy().astype(np.int32)
    sent = base.assign(ip=src, remote=dst, port=dport)
    received = base.assign(ip=dst, remote=src, port=sport)
    return pd.concat([sent, received], ignore_index=True)


def mining_window_features(
    f: pd.DataFrame, x: pd.DataFrame, per_min: pd.Series, stratum: pa.Table | None, hop_ns: int, window_ns: int
) -> None:
    """Add :data:`MINING_FEATURES` to ``f`` (indexed by entity and window) from the stratum table's messages."""
    for name in MINING_FEATURES:
        f[name] = 0.0
    if stratum is None or stratum.num_rows == 0:
        return
    ents = x[["ip", "capture_point", "vni", "entity_id"]].drop_duplicates(["ip", "capture_point", "vni"])
    opened = x.loc[x["out"].to_numpy(), ["entity_id", "remote", "port"]].drop_duplicates()
    d = _messages(stratum).merge(ents, on=["ip", "capture_point", "vni"], how="inner")
    d = d.merge(opened, on=["entity_id", "remote", "port"], how="inner")
    if d.empty:
        return
    w = in_windows(d, hop_ns, window_ns).groupby(_KEYS)
    f["mining_messages_out_per_min"] = w.size().reindex(f.index).fillna(0.0).astype(float) * per_min
    pools = w[["remote", "port"]].value_counts().groupby(level=[0, 1]).size()
    f["mining_pools_out"] = pools.reindex(f.index).fillna(0.0).astype(float)
