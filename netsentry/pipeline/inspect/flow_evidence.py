"""Concrete counts behind a compromise verdict: the VM's flows during the flagged span."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds

from netsentry.pipeline.core.schemas import ip16_from_text, ip16_numpy, ip_text
from netsentry.pipeline.features.tenant.catalogue import FAILED_STATES

EVIDENCE_COLUMNS = (
    "capture_point", "src_ip", "dst_ip", "dst_port", "protocol", "first_seen_ns", "conn_state",
    "bidirectional_packets", "src2dst_bytes", "dst2src_bytes",
)  # fmt: skip
PROTOCOLS = {1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6", 132: "sctp"}
TOP = 5


class FlowIndex:
    """The flows table, loaded once (evidence columns only), searchable by address and time."""

    def __init__(self, flows_dir: str | Path) -> None:
        table = ds.dataset(str(flows_dir), format="parquet").to_table(columns=list(EVIDENCE_COLUMNS))
        empty = np.zeros((0, 16), np.uint8)
        self.src16 = np.ascontiguousarray(ip16_numpy(table["src_ip"])) if len(table) else empty
        self.dst16 = np.ascontiguousarray(ip16_numpy(table["dst_ip"])) if len(table) else empty
        self.src, self.dst = self.src16.view("S16").ravel(), self.dst16.view("S16").ravel()
        self.first_seen = table["first_seen_ns"].to_numpy()
        self.table = table

    def _column(self, name: str, rows: np.ndarray) -> np.ndarray:
        col = self.table[name].take(pa.array(rows))
        if pa.types.is_dictionary(col.type):
            col = col.cast(col.type.value_type)
        return col.to_numpy(zero_copy_only=False)

    def evidence(
        self,
        ips: Sequence[str],
        start_ns: int,
        end_ns: int,
        capture_point: str | None = None,
        since_ns: int | None = None,
    ) -> dict[str, Any]:
        """Counts, top remotes and top ports of the flows to or from ``ips`` that started in ``[start, end)``.

        Remotes and ports are ranked by their *excess* over the scope's own rate in ``[since, start)``
        (``usual``: the flows expected in the span at that rate), so what changed comes first, not the
        VM's everyday traffic.
        """
        empty: dict[str, Any] = {"counts": {"flows_out": 0, "flows_in": 0}, "remotes": [], "ports": []}
        if not ips or len(self.table) == 0:
            return empty
        since = start_ns if since_ns is None else min(since_ns, start_ns)
        mine = ip16_from_text(list(ips)).view("S16").ravel()
        out_m, in_m = np.isin(self.src, mine), np.isin(self.dst, mine)
        first = self.first_seen
        sel = np.flatnonzero((out_m | in_m) & (first >= since) & (first < end_ns))
        if capture_point is not None and len(sel):
            cps = self._column("capture_point", sel)
            if (cps == capture_point).any():
                sel = sel[cps == capture_point]
        f = self._frame(sel, out_m[sel])
        f["in_span"] = first[sel] >= start_ns
        span = f[f["in_span"]]
        if span.empty:
            return empty
        before_s, span_s = (start_ns - since) / 1e9, (end_ns - start_ns) / 1e9
        rate = span_s / before_s if before_s > 0 else 0.0
        return {
            "counts": _counts(span),
            "remotes": _ranked(f, ["remote"], rate, lambda ip, g: {
                "ip": str(ip), "packets": int(g["packets"].sum()), "bytes": int(g["bytes"].sum()),
                "ports": [int(p) for p in g["port"].value_counts().head(3).index]}),
            "ports": _ranked(f, ["port", "proto", "direction"], rate, lambda key, g: {
                "port": int(key[0]), "proto": str(key[1]), "direction": str(key[2]),
                "failed": int(g["failed"].sum()), "remotes": int(g["remote"].nunique())}),
        }  # fmt: skip

    def _frame(self, sel: np.ndarray, outgoing: np.ndarray) -> pd.DataFrame:
        raw_src, raw_dst = self.src16[sel], self.dst16[sel]
        proto = self._column("protocol", sel).astype(np.int64)
        state = self._column("conn_state", sel).astype(str)
        s2d, d2s = self._column("src2dst_bytes", sel), self._column("dst2src_bytes", sel)
        f = pd.DataFrame(
            {
                "outgoing": outgoing,
                "direction": np.where(outgoing, "out", "in"),
                "remote": ip_text(np.where(outgoing[:, None], raw_dst, raw_src)),
                "port": self._column("dst_port", sel).astype(np.int64),
                "proto": [PROTOCOLS.get(int(p), str(int(p))) for p in proto],
                "failed": np.isin(state, FAILED_STATES) & (proto == 6),
                "packets": self._column("bidirectional_packets", sel).astype(np.int64),
                "sent": np.where(outgoing, s2d, d2s).astype(np.int64),
                "received": np.where(outgoing, d2s, s2d).astype(np.int64),
            }
        )
        f["bytes"] = f["sent"] + f["received"]
        return f


def _counts(f: pd.DataFrame) -> dict[str, int]:
    o, i = f[f["outgoing"]], f[~f["outgoing"]]
    return {
        "flows_out": len(o),
        "flows_in": len(i),
        "failed_out": int(o["failed"].sum()),
        "failed_in": int(i["failed"].sum()),
        "remote_ips_out": int(o["remote"].nunique()),
        "remote_ips_in": int(i["remote"].nunique()),
        "ports_out": int(o["port"].nunique()),
        "bytes_sent": int(f["sent"].sum()),
        "bytes_received": int(f["received"].sum()),
        "packets": int(f["packets"].sum()),
    }


def _ranked(f: pd.DataFrame, keys: list[str], rate: float, describe: Any) -> list[dict[str, Any]]:
    """Top groups of span flows by excess over ``rate`` × their flows before the span."""
    by: str | list[str] = keys[0] if len(keys) == 1 else keys
    span = f[f["in_span"]]
    n_span = span.groupby(by, sort=False).size()
    n_before = f[~f["in_span"]].groupby(by, sort=False).size().reindex(n_span.index, fill_value=0)
    usual = n_before * rate
    order = pd.DataFrame({"flows": n_span, "usual": usual, "excess": n_span - usual})
    order = order.sort_values(["excess", "flows"], ascending=False, kind="stable").head(TOP)
    # only the top groups are described: materialising every group cost seconds for a flood's 37,000 remotes
    top = span[keys[0]].isin(order.index) if len(keys) == 1 else pd.MultiIndex.from_frame(span[keys]).isin(order.index)
    groups = dict(list(span[top].groupby(by, sort=False)))
    rows = []
    for key, r in order.iterrows():
        rows.append({**describe(key, groups[key]), "flows": int(r["flows"]), "usual": round(float(r["usual"]), 1)})
    return rows
