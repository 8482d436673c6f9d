"""DNS features per (entity, window) from the ``dns`` table: they count queries, not flows.

A tunnel that keeps one UDP socket is one flow but hundreds of queries; its names are long, high in entropy, all
under one registered domain and ever new, and it asks for record types that carry data. Each query is counted for
the entity that sent it (matched on address, capture point and VNI at the entity's main capture point) in every
window it falls in.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from netsentry.pipeline.core.schemas import DNS_NXDOMAIN, ip_text
from netsentry.pipeline.features.tenant.catalogue import DNS_LONG_NAME_CHARS, DNS_PRIVATE_QTYPE, DNS_TUNNEL_QTYPES

_KEYS = ["entity_id", "window_id"]
DNS_TABLE_FEATURES = ("dns_name_len_mean", "dns_name_len_max", "dns_label_entropy_mean", "dns_tunnel_type_share",
                      "dns_nxdomain_share", "dns_top_domain_per_min", "dns_top_domain_names_per_min")  # fmt: skip
"""Features only the dns table gives (0 in a workspace without one)."""
_COLUMNS = ("ts_ns", "capture_point", "vni", "src_ip", "dst_ip", "is_response", "opcode", "rcode", "qtype",
            "name_len", "label_entropy", "domain_hash", "name_hash")  # fmt: skip


def _messages(dns: pa.Table) -> pd.DataFrame:
    """The dns table's standard queries and responses (opcode 0) as a frame with text addresses."""
    t = dns.select(list(_COLUMNS))
    d = pd.DataFrame({c: t.column(c).to_numpy() for c in _COLUMNS if c not in ("capture_point", "src_ip", "dst_ip")})
    d["capture_point"] = np.asarray(t.column("capture_point").cast(pa.string()).to_pylist(), dtype=object)
    d["src"], d["dst"] = ip_text(t.column("src_ip")), ip_text(t.column("dst_ip"))
    return d[d["opcode"].to_numpy() == 0]


def in_windows(d: pd.DataFrame, hop_ns: int, window_ns: int) -> pd.DataFrame:
    """One row per (message, window it falls in) with ``window_id``."""
    ts = d["ts_ns"].to_numpy(np.int64)
    lo = (ts - window_ns) // hop_ns + 1
    hi = ts // hop_ns
    reps = np.maximum(hi - lo + 1, 0)
    rows = np.repeat(np.arange(len(d)), reps)
    offs = np.arange(len(rows)) - np.repeat(np.cumsum(reps) - reps, reps)
    out = d.iloc[rows].reset_index(drop=True)
    out["window_id"] = lo[rows] + offs
    return out


def _of_entities(d: pd.DataFrame, x: pd.DataFrame, addr: str) -> pd.DataFrame:
    """Messages whose ``addr`` column is an entity's address at its capture point (and VNI), with ``entity_id``."""
    ents = x[["ip", "capture_point", "vni", "entity_id"]].drop_duplicates(["ip", "capture_point", "vni"])
    ents = ents.rename(columns={"ip": addr})
    return d.merge(ents, on=[addr, "capture_point", "vni"], how="inner")


def dns_window_features(
    f: pd.DataFrame, x: pd.DataFrame, per_min: pd.Series, dns: pa.Table, hop_ns: int, window_ns: int
) -> None:
    """Add the DNS features to ``f`` (indexed by entity and window) from the dns table's messages."""
    idx = f.index
    d = _messages(dns)
    queries, answers = d[~d["is_response"].to_numpy()], d[d["is_response"].to_numpy()]
    sent = in_windows(_of_entities(queries, x, "src"), hop_ns, window_ns)
    received = in_windows(_of_entities(queries, x, "dst"), hop_ns, window_ns)
    replies = in_windows(_of_entities(answers, x, "dst"), hop_ns, window_ns)
    by_sent = sent.groupby(_KEYS)

    def fill(s: pd.Series) -> pd.Series:
        return s.reindex(idx).fillna(0.0).astype(float)

    f["dns_queries_per_min"] = fill(by_sent.size()) * per_min
    f["dns_name_len_mean"] = fill(by_sent["name_len"].mean())
    f["dns_name_len_max"] = fill(by_sent["name_len"].max())
    f["dns_label_entropy_mean"] = fill(by_sent["label_entropy"].mean())
    typed = sent[sent["qtype"].to_numpy() > 0]  # a name the snap length cut hides its type: not counted either way
    qtype = typed["qtype"].to_numpy()
    typed = typed.assign(tunnel=np.isin(qtype, DNS_TUNNEL_QTYPES) | (qtype >= DNS_PRIVATE_QTYPE))
    f["dns_tunnel_type_share"] = fill(typed.groupby(_KEYS)["tunnel"].mean())
    f["dns_nxdomain_share"] = fill(replies.assign(nx=replies["rcode"] == DNS_NXDOMAIN).groupby(_KEYS)["nx"].mean())
    long_sent = fill(sent[sent["name_len"].to_numpy() > DNS_LONG_NAME_CHARS].groupby(_KEYS).size())
    long_received = fill(received[received["name_len"].to_numpy() > DNS_LONG_NAME_CHARS].groupby(_KEYS).size())
    f["dns_large_queries_per_min"] = long_sent * per_min
    f["dns_large_originated_per_min"] = ((long_sent - long_received) * per_min).clip(lower=0.0)
    f["dns_large_terminated_per_min"] = ((long_received - long_sent) * per_min).clip(lower=0.0)
    _busiest_domain(f, sent, per_min)


def _busiest_domain(f: pd.DataFrame, sent: pd.DataFrame, per_min: pd.Series) -> None:
    """The registered domain the entity queried most in the window: its query rate and distinct names per minute."""
    idx = f.index
    if sent.empty:
        f["dns_top_domain_per_min"] = 0.0
        f["dns_top_domain_names_per_min"] = 0.0
        return
    per_domain = sent.groupby([*_KEYS, "domain_hash"]).agg(n=("name_hash", "size"), names=("name_hash", "nunique"))
    top = per_domain.sort_values(["n", "names"]).groupby(level=[0, 1]).tail(1).droplevel(2)
    f["dns_top_domain_per_min"] = top["n"].reindex(idx).fillna(0.0).astype(float) * per_min
    f["dns_top_domain_names_per_min"] = top["names"].reindex(idx).fillna(0.0).astype(float) * per_min
