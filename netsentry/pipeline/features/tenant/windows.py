"""Tenant windows: one row per VM (local endpoint) per sliding time window, from its flows.

Every flow is seen from both of its endpoints: as an *outgoing* flow of the initiator and an *incoming* flow of
the responder. An endpoint is an entity when the tenant map knows it (a VM); with no tenant map (a real capture
of unknown hosts) every address is one. Windows are ``window_s`` long and start every ``hop_s`` seconds on
epoch-aligned boundaries; a flow belongs to every window it overlaps, its bytes and packets spread over them in
proportion to the overlap. Rates are per second (or per minute) of the *observed* part of the window, so a short
capture and a long one give comparable values. Each entity is read at the capture point that saw most of its
flows (a VM tap, host uplink and gateway would otherwise count one connection thrice). The catalogue of features
is :data:`TENANT_FEATURES` (rendered in ``docs/features.md``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from netsentry.pipeline.capture.tenants import UNKNOWN as UNKNOWN_VM
from netsentry.pipeline.core.errors import SchemaError
from netsentry.pipeline.core.schemas import ip_text

NS = 1_000_000_000
FAILED_STATES = ("S0", "REJ", "RSTOS0", "RSTRH", "SH", "SHR")
"""Zeek states of a TCP connection whose handshake never completed."""
SENSITIVE_PORTS = (21, 22, 23, 25, 135, 139, 445, 3389, 5900)
"""Remote-login, mail and file-sharing services: brute force and lateral movement land here (databases are
left out: app servers open many short database connections every second)."""
DNS_PORT = 53
DNS_LARGE_REQUEST_B = 180
"""A DNS request packet this big carries a name of ~100+ characters: tunnelled data, not a lookup."""
BEACON_MIN_IATS = 4
BEACON_LAST_IATS = 8
BEACON_MIN_PERIOD_S = 2.0
BEACON_SD_SCALE = 0.5
HISTORY_CAP_S = 3600.0
IDLE_GAP_S = 2.0
"""A TCP connection whose packets are this many seconds apart on average is mostly idle (interactive sessions and
transfers exchange packets far more often)."""
MIN_OBSERVED_S = 30.0
"""Rates assume at least this much observation (or the whole window if shorter): one connection in a one-second
capture is not sixty a minute."""
SHORT_S = 30.0
SHORT_NS = int(SHORT_S * 1e9)

KEY_COLUMNS = ("scope_type", "scope", "tenant", "vm", "ip", "capture_point", "window_start_ns", "window_s")
"""Columns that say which entity and window a row is; every other column is a feature (or a label)."""

TENANT_FEATURES: dict[str, str] = {
    "observed_s": f"seconds of the window covered by the capture, at least {MIN_OBSERVED_S:g} (s)",
    "history_s": "seconds this entity had been seen before the window started, capped at 3600 (s)",
    "active_flows": "flows of the entity overlapping the window, both directions (count)",
    "flows_out_per_min": "connections the entity initiated that started in the window (per minute)",
    "flows_in_per_min": "connections to the entity that started in the window (per minute)",
    "bytes_sent_per_s": "bytes the entity sent, all its flows, spread over each flow's duration (bytes/s)",
    "bytes_received_per_s": "bytes the entity received (bytes/s)",
    "packets_sent_per_s": "packets the entity sent (packets/s)",
    "packets_received_per_s": "packets the entity received (packets/s)",
    "upload_out_per_s": "bytes the entity sent on connections it initiated (uploads, not answers) (bytes/s)",
    "bytes_sent_share": "bytes sent / (bytes sent + received): 1 uploads only, 0 downloads only (ratio)",
    "remote_ips_out": "distinct addresses the entity connected to (count)",
    "remote_ips_in": "distinct addresses that connected to the entity (count)",
    "remote_24s_out": "distinct /24 networks (IPv6: /64) the entity connected to (count)",
    "service_ports_out": "distinct destination ports of the entity's outgoing flows (count)",
    "local_ports_in": "distinct local ports that received incoming flows (count)",
    "remote_ip_entropy_out": "Shannon entropy of the outgoing flows' remote addresses (bits)",
    "service_port_entropy_out": "Shannon entropy of the outgoing flows' destination ports (bits)",
    "remote_ip_entropy_in": "Shannon entropy of the incoming flows' remote addresses (bits)",
    "failed_ratio_out": f"outgoing TCP flows whose handshake failed ({'/'.join(FAILED_STATES)}) / outgoing TCP "
    "flows (ratio)",
    "failed_ratio_in": "incoming TCP flows whose handshake failed / incoming TCP flows (ratio)",
    "failed_out_per_min": "outgoing TCP flows with a failed handshake (per minute)",
    "failed_in_per_min": "incoming TCP flows with a failed handshake (per minute)",
    "sensitive_share_out": "outgoing flows to remote-login/file-sharing/database ports "
    f"({', '.join(map(str, SENSITIVE_PORTS))}) / outgoing flows (ratio)",
    "sensitive_share_in": "incoming flows to those ports / incoming flows (ratio)",
    "sensitive_out_per_min": "outgoing flows to those ports that started in the window (per minute)",
    "sensitive_in_per_min": "incoming flows to those ports that started in the window (per minute)",
    "short_sensitive_out_per_min": f"of those outgoing flows, the ones that ended within {SHORT_S:g} s: guesses "
    "and probes, not sessions; a connection still open when the capture ended is a session of unknown length, "
    "not short (per minute)",
    "short_sensitive_in_per_min": f"of those incoming flows, the ones that ended within {SHORT_S:g} s (per minute)",
    "flows_per_service_out": "outgoing flows / distinct (remote address, port) pairs: repeated connections (ratio)",
    "max_flows_per_service_out": "most outgoing flows to one (remote address, port) (count)",
    "max_flows_per_service_in": "most incoming flows from one remote address to one local port (count)",
    "max_ports_per_remote_out": "most distinct ports probed on one remote address: vertical scan (count)",
    "max_remotes_per_port_out": "most distinct addresses contacted on one port: horizontal scan (count)",
    "max_remotes_per_port_in": "most distinct addresses connecting to one local port: flood or fan-in (count)",
    "new_remote_share_out": "share of the remote addresses contacted that the entity had not talked to "
    "before the window started (ratio; 0 until the entity has a window of history)",
    "new_ports_out": "destination ports the entity had never used before the window (count; 0 until it has a "
    "window of history)",
    "new_remotes_out": "remote addresses the entity had never contacted before the window (count; 0 until a "
    "window of history)",
    "new_local_ports_in": "local ports that had never received a flow before the window (count; 0 until a window "
    "of history)",
    "new_remotes_in": "remote addresses that had never connected to the entity before (count; 0 until a window of "
    "history)",
    "beacon_score_out": "regularity of repeated connections to one (remote, port): 1 - min(1, sd(log "
    f"inter-start time) / {BEACON_SD_SCALE:g}) over its last {BEACON_LAST_IATS} gaps, needing at least "
    f"{BEACON_MIN_IATS} with a geometric-mean period >= {BEACON_MIN_PERIOD_S:g} s; Poisson arrivals score ~0, "
    "a timer with 10% jitter ~0.8; max over services (0..1)",
    "persistent_flows_out": "outgoing flows active in the window that have lasted at least a window so far (count)",
    "persistent_bytes_per_s_out": "bytes per second of those persistent flows, both directions (bytes/s)",
    "idle_persistent_flows_out": "of those persistent flows, established TCP ones (handshake completed) whose "
    f"packets are on average at least {IDLE_GAP_S:g} s apart: a connection held open for occasional messages, as "
    "a mining pool's job channel or a C2 session; SYNs retried to a silent host are no such connection (count)",
    "dns_queries_per_min": f"outgoing flows to port {DNS_PORT} that started in the window (per minute)",
    "dns_query_mean_bytes": "mean size of the entity's DNS request packets; long tunnelled names are big (bytes)",
    "dns_large_queries_per_min": f"DNS flows whose request packets average more than {DNS_LARGE_REQUEST_B} bytes "
    "(names of ~100+ characters, as tunnels use) (per minute)",
    "dns_large_originated_per_min": "large DNS queries the entity sent beyond the large ones it received: a "
    "resolver forwarding its clients' tunnelled names relays them, the tunnelling VM originates them (per minute)",
    "udp_share_out": "outgoing UDP flows / outgoing flows (ratio)",
    "icmp_share_out": "outgoing ICMP flows / outgoing flows (ratio)",
    "mean_flow_bytes_out": "mean bytes (both directions) of the outgoing flows that started in the window (bytes)",
    "mean_flow_duration_s_out": "mean duration of those flows (s)",
    "mean_packets_per_flow_out": "mean packets (both directions) of those flows (packets)",
    "flows_out_vs_baseline": "flows_out_per_min / the entity's median over its earlier windows (ratio; 1 when "
    "there is no earlier window)",
    "remote_ips_out_vs_baseline": "remote_ips_out / the entity's earlier median (ratio; 1 with no history)",
    "bytes_sent_vs_baseline": "bytes_sent_per_s / the entity's earlier median (ratio; 1 with no history)",
    "flows_in_vs_baseline": "flows_in_per_min / the entity's earlier median (ratio; 1 with no history)",
    "failed_out_vs_baseline": "failed_out_per_min / the entity's earlier median (ratio; 1 with no history)",
    "failed_in_vs_baseline": "failed_in_per_min / the entity's earlier median (ratio; 1 with no history)",
    "dns_queries_vs_baseline": "dns_queries_per_min / the entity's earlier median (ratio; 1 with no history)",
    "dns_bytes_vs_baseline": "dns_query_mean_bytes / the entity's earlier median (ratio; 1 with no history)",
    "max_flows_per_service_out_vs_baseline": "max_flows_per_service_out / the entity's earlier median (ratio; 1 "
    "with no history)",
    "max_flows_per_service_in_vs_baseline": "max_flows_per_service_in / the entity's earlier median (ratio; 1 "
    "with no history)",
    "sensitive_in_vs_baseline": "sensitive_in_per_min / the entity's earlier median (ratio; 1 with no history)",
    "sensitive_out_vs_baseline": "sensitive_out_per_min / the entity's earlier median (ratio; 1 with no history)",
    "upload_out_vs_baseline": "upload_out_per_s / the entity's earlier median (ratio; 1 with no history)",
}

DESCRIPTIVE_FEATURES = (
    "observed_s", "history_s", "active_flows", "flows_out_per_min", "flows_in_per_min", "bytes_sent_per_s",
    "bytes_received_per_s", "packets_sent_per_s", "packets_received_per_s", "bytes_sent_share", "remote_ips_out",
    "remote_ips_in", "remote_24s_out", "local_ports_in", "remote_ip_entropy_out", "remote_ip_entropy_in",
    "flows_per_service_out", "max_flows_per_service_in", "service_ports_out", "service_port_entropy_out",
    "max_flows_per_service_out", "mean_flow_bytes_out", "mean_packets_per_flow_out",
    "mean_flow_duration_s_out", "udp_share_out", "dns_queries_per_min", "dns_query_mean_bytes",
)  # fmt: skip
"""Volumes and mixes that say what role a VM has more than whether it misbehaves. Kept in the table (evidence,
baselines) but not given to the compromise detector: trained on a handful of attacked VMs, a model would learn
*which* VMs were attacked instead of what an attack looks like (measured on ``mixed``: ROC-AUC 0.90 → 0.94)."""

MODEL_FEATURES = tuple(c for c in TENANT_FEATURES if c not in DESCRIPTIVE_FEATURES)
"""The compromise detector's inputs."""

_BASELINED = {
    "flows_out_vs_baseline": "flows_out_per_min",
    "remote_ips_out_vs_baseline": "remote_ips_out",
    "bytes_sent_vs_baseline": "bytes_sent_per_s",
    "flows_in_vs_baseline": "flows_in_per_min",
    "failed_out_vs_baseline": "failed_out_per_min",
    "failed_in_vs_baseline": "failed_in_per_min",
    "dns_queries_vs_baseline": "dns_queries_per_min",
    "dns_bytes_vs_baseline": "dns_query_mean_bytes",
    "max_flows_per_service_out_vs_baseline": "max_flows_per_service_out",
    "max_flows_per_service_in_vs_baseline": "max_flows_per_service_in",
    "sensitive_in_vs_baseline": "sensitive_in_per_min",
    "sensitive_out_vs_baseline": "sensitive_out_per_min",
    "upload_out_vs_baseline": "upload_out_per_s",
}
FLOW_COLUMNS = (
    "capture_point", "vni", "src_ip", "dst_ip", "src_port", "dst_port", "protocol", "src_tenant", "src_vm",
    "dst_tenant", "dst_vm", "first_seen_ns", "last_seen_ns", "src2dst_packets", "dst2src_packets", "src2dst_bytes",
    "dst2src_bytes", "conn_state", "end_reason",
)  # fmt: skip


@dataclass(frozen=True)
class WindowSpec:
    """Window length and hop in seconds (hop divides nothing in particular; both > 0)."""

    window_s: float = 60.0
    hop_s: float = 10.0

    def __post_init__(self) -> None:
        if not (self.window_s > 0 and self.hop_s > 0):
            raise SchemaError(f"window and hop must be > 0 seconds, got window={self.window_s} hop={self.hop_s}")
        if self.hop_s > self.window_s:
            raise SchemaError(f"hop ({self.hop_s:g} s) must not exceed the window ({self.window_s:g} s)")


def _strings(col: pa.ChunkedArray | pa.Array) -> np.ndarray:
    return np.asarray(col.cast(pa.string()).to_pandas().fillna("").to_numpy(dtype=object))


def _sides(flows: pa.Table) -> pd.DataFrame:
    """One row per (flow, endpoint): the flow as the initiator's outgoing and the responder's incoming flow."""
    missing = [c for c in FLOW_COLUMNS if c not in flows.column_names]
    if missing:
        raise SchemaError(f"flows table lacks column(s) {', '.join(missing)}; rerun `netsentry flows`")
    t = flows.select(list(FLOW_COLUMNS))
    src, dst = ip_text(t.column("src_ip")), ip_text(t.column("dst_ip"))
    st, sv = _strings(t.column("src_tenant")), _strings(t.column("src_vm"))
    dt, dv = _strings(t.column("dst_tenant")), _strings(t.column("dst_vm"))
    text = ("src_ip", "dst_ip", "capture_point", "src_tenant", "src_vm", "dst_tenant", "dst_vm", "conn_state",
            "end_reason")  # fmt: skip
    num = {c: t.column(c).to_numpy() for c in FLOW_COLUMNS if c not in text}
    state = _strings(t.column("conn_state"))
    failed = np.isin(state, FAILED_STATES) & (num["protocol"] == 6)
    # a connection the capture ended while it was open: a session of unknown length, never "short"
    cut = (_strings(t.column("end_reason")) == "eof") & ~failed
    point = _strings(t.column("capture_point"))
    n = t.num_rows
    flow_idx = np.arange(n)

    def side(out: bool) -> pd.DataFrame:
        me, other = (src, dst) if out else (dst, src)
        tenant, vm = (st, sv) if out else (dt, dv)
        sent_p, recv_p = (num["src2dst_packets"], num["dst2src_packets"])
        sent_b, recv_b = (num["src2dst_bytes"], num["dst2src_bytes"])
        if not out:
            sent_p, recv_p, sent_b, recv_b = recv_p, sent_p, recv_b, sent_b
        return pd.DataFrame(
            {
                "flow": flow_idx,
                "tenant": tenant,
                "vm": np.where((vm == "") | (vm == "external"), me, vm),
                "ip": me,
                "remote": other,
                "port": num["dst_port"].astype(np.int32),
                "proto": num["protocol"].astype(np.int16),
                "capture_point": point,
                "vni": num["vni"],
                "out": np.full(n, out),
                "failed": failed,
                "cut": cut,
                "start": num["first_seen_ns"],
                "end": num["last_seen_ns"],
                "sent_p": sent_p.astype(np.float64),
                "recv_p": recv_p.astype(np.float64),
                "sent_b": sent_b.astype(np.float64),
                "recv_b": recv_b.astype(np.float64),
                "req_size": num["src2dst_bytes"] / np.maximum(num["src2dst_packets"], 1),
            }
        )

    return pd.concat([side(True), side(False)], ignore_index=True)


def _local_entities(sides: pd.DataFrame) -> pd.DataFrame:
    """Keep endpoints the tenant map knows (all endpoints when it knows none), each at its main capture point.

    The main point of an entity is the one where its flows carry an overlay VNI (tenants reusing a CIDR are told
    apart only there), then the one with most flows."""
    local = sides["tenant"] != "external"
    if local.any():
        # VMs only: an address inside a VPC that no port declares ("unknown", e.g. a scanned empty slot) is not one
        sides = sides[local & (sides["vm"] != UNKNOWN_VM)]
    sides = sides.assign(
        entity=sides["tenant"].astype(str) + "/" + sides["vm"].astype(str), has_vni=sides["vni"].to_numpy() != 0
    )
    counts = (
        sides.groupby(["entity", "capture_point"], observed=True)
        .agg(n=("has_vni", "size"), vni=("has_vni", "mean"))
        .reset_index()
    )
    counts["vni"] = counts["vni"] > 0.5
    main = counts.sort_values(
        ["entity", "vni", "n", "capture_point"], ascending=[True, False, False, True]
    ).drop_duplicates("entity")
    keep = sides.merge(main[["entity", "capture_point"]], on=["entity", "capture_point"], how="inner")
    keep["ent"] = pd.factorize(keep["entity"])[0]
    return keep


def _beacon_scores(s: pd.DataFrame) -> np.ndarray:
    """Per outgoing flow: regularity of the starts of the entity's flows to the same (remote, port) up to it."""
    score = np.zeros(len(s))
    out = np.flatnonzero(s["out"].to_numpy())
    if len(out) == 0:
        return score
    o = s.iloc[out]
    grp = pd.factorize(o["ent"].astype(str) + "|" + o["remote"].astype(str) + "|" + o["port"].astype(str))[0]
    order = np.lexsort((o["start"].to_numpy(), grp))
    g, t = grp[order], o["start"].to_numpy()[order] / NS
    first = np.r_[True, g[1:] != g[:-1]]
    iat = np.where(first, 0.0, np.diff(t, prepend=t[0]))
    ok_iat = ~first
    liat = np.where(ok_iat, np.log(np.maximum(iat, 1e-9)), 0.0)
    c1, c2, cn = np.cumsum(liat), np.cumsum(liat * liat), np.cumsum(ok_iat.astype(np.float64))
    idx = np.arange(len(g))
    grp_start = np.maximum.accumulate(np.where(first, idx, 0))
    lo = np.maximum(idx - BEACON_LAST_IATS, grp_start)  # IATs in (lo, idx]
    n_iat, s1, s2 = cn - cn[lo], c1 - c1[lo], c2 - c2[lo]
    mean = np.divide(s1, n_iat, out=np.zeros_like(s1), where=n_iat > 0)
    sd = np.sqrt(np.maximum(np.divide(s2, n_iat, out=np.zeros_like(s2), where=n_iat > 0) - mean * mean, 0.0))
    # Poisson arrivals give sd(log IAT) ≈ 1.28; a timer with 10 % jitter ≈ 0.1
    periodic = (n_iat >= BEACON_MIN_IATS) & (mean >= np.log(BEACON_MIN_PERIOD_S))
    sc = np.where(periodic, 1.0 - np.minimum(sd / BEACON_SD_SCALE, 1.0), 0.0)
    res = np.empty(len(g))
    res[order] = sc
    score[out] = res
    return score


def _explode(s: pd.DataFrame, spec: WindowSpec, t_min: int, t_max: int) -> tuple[pd.DataFrame, int, int]:
    """Rows (side, window) for every window a flow overlaps, with the overlap fraction and a started flag."""
    H, W = int(spec.hop_s * NS), int(spec.window_s * NS)
    k0 = t_min // H
    k1 = max(k0, -(-(t_max - W) // H))
    start, end = s["start"].to_numpy(), s["end"].to_numpy()
    lo = np.clip((start - W) // H + 1, k0, k1)
    hi = np.clip(end // H, k0, k1)
    reps = np.maximum(hi - lo + 1, 0)
    rows = np.repeat(np.arange(len(s)), reps)
    offs = np.arange(len(rows)) - np.repeat(np.cumsum(reps) - reps, reps)
    k = lo[rows] + offs
    x = s.iloc[rows].reset_index(drop=True)
    ws = k * H
    st, en = start[rows], end[rows]
    ov = np.minimum(en, ws + W) - np.maximum(st, ws)
    dur = en - st
    frac = np.where(dur > 0, np.clip(ov, 0, None) / np.maximum(dur, 1), 1.0)
    x["k"] = k
    x["frac"] = frac
    x["started"] = (st >= ws) & (st < ws + W)
    return x, k0, k1


def _entropy(x: pd.DataFrame, keys: list[str], value: str) -> pd.Series:
    c = x.groupby([*keys, value], observed=True).size()
    tot = c.groupby(level=list(range(len(keys)))).transform("sum")
    p = c / tot
    return (-(p * np.log2(p))).groupby(level=list(range(len(keys)))).sum()


def _remote_net(remote: pd.Series) -> pd.Series:
    r = remote.astype(str)
    v4 = ~r.str.contains(":", regex=False)
    return pd.Series(np.where(v4, r.str.rsplit(".", n=1).str[0], r.str.split(":").str[:4].str.join(":")),
                     index=remote.index)  # fmt: skip


def tenant_windows(flows: pa.Table, spec: WindowSpec | None = None) -> pd.DataFrame:
    """Flows → one row per (entity, window) with :data:`TENANT_FEATURES`; empty frame when there are no flows."""
    spec = spec or WindowSpec()
    cols = list(KEY_COLUMNS) + list(TENANT_FEATURES)
    if flows.num_rows == 0:
        return pd.DataFrame({c: pd.Series(dtype="float64") for c in cols})
    sides = _local_entities(_sides(flows))
    if sides.empty:
        return pd.DataFrame({c: pd.Series(dtype="float64") for c in cols})
    t_min = int(min(sides["start"].min(), sides["end"].min()))
    t_max = int(sides["end"].max())
    sides["beacon"] = _beacon_scores(sides)
    first_seen = sides.groupby("ent")["start"].min()
    first_contact = sides.groupby(["ent", "remote"], observed=True)["start"].min().rename("first_contact")
    x, _, _ = _explode(sides, spec, t_min, t_max)
    H, W = int(spec.hop_s * NS), int(spec.window_s * NS)
    keys = ["ent", "k"]
    ws = x["k"].to_numpy() * H
    obs_s = (np.minimum(ws + W, t_max) - np.maximum(ws, t_min)) / NS
    x["obs"] = np.maximum(obs_s, min(spec.window_s, MIN_OBSERVED_S))
    out, inn = x["out"].to_numpy(), ~x["out"].to_numpy()
    started = x["started"].to_numpy()
    tcp = x["proto"].to_numpy() == 6
    port = x["port"].to_numpy()
    dur = (x["end"] - x["start"]).to_numpy()
    short = (dur < SHORT_NS) & ~x["cut"].to_numpy()
    x = x.assign(
        so=started & out, si=started & inn,
        tcp_o=tcp & out, tcp_i=tcp & inn,
        fail_o=x["failed"].to_numpy() & out, fail_i=x["failed"].to_numpy() & inn,
        sens_o=np.isin(port, SENSITIVE_PORTS) & out, sens_i=np.isin(port, SENSITIVE_PORTS) & inn,
        udp_o=(x["proto"].to_numpy() == 17) & out, icmp_o=np.isin(x["proto"].to_numpy(), (1, 58)) & out,
        dns=started & out & (port == DNS_PORT),
        ssens_o=started & out & np.isin(port, SENSITIVE_PORTS),
        ssens_i=started & inn & np.isin(port, SENSITIVE_PORTS),
        short_o=started & out & np.isin(port, SENSITIVE_PORTS) & short,
        short_i=started & inn & np.isin(port, SENSITIVE_PORTS) & short,
        vup=x["frac"] * x["sent_b"] * out,
        vsent_b=x["frac"] * x["sent_b"], vrecv_b=x["frac"] * x["recv_b"],
        vsent_p=x["frac"] * x["sent_p"], vrecv_p=x["frac"] * x["recv_p"],
        tot_b=x["sent_b"] + x["recv_b"], tot_p=x["sent_p"] + x["recv_p"],
        dur_s=dur / NS,
    )  # fmt: skip
    g = x.groupby(keys, sort=True)
    agg = g.agg(
        obs=("obs", "first"), active_flows=("flow", "size"), so=("so", "sum"), si=("si", "sum"),
        tcp_o=("tcp_o", "sum"), tcp_i=("tcp_i", "sum"), fail_o=("fail_o", "sum"), fail_i=("fail_i", "sum"),
        sens_o=("sens_o", "sum"), sens_i=("sens_i", "sum"), udp_o=("udp_o", "sum"), icmp_o=("icmp_o", "sum"),
        dns=("dns", "sum"), sent_b=("vsent_b", "sum"), recv_b=("vrecv_b", "sum"), sent_p=("vsent_p", "sum"),
        recv_p=("vrecv_p", "sum"), n_out=("out", "sum"), ssens_o=("ssens_o", "sum"), ssens_i=("ssens_i", "sum"),
        short_o=("short_o", "sum"), short_i=("short_i", "sum"), up=("vup", "sum"),
    )  # fmt: skip
    n_in = agg["active_flows"] - agg["n_out"]
    per_min = 60.0 / agg["obs"]
    f = pd.DataFrame(index=agg.index)
    f["observed_s"] = agg["obs"]
    f["active_flows"] = agg["active_flows"].astype(float)
    f["flows_out_per_min"] = agg["so"] * per_min
    f["flows_in_per_min"] = agg["si"] * per_min
    f["bytes_sent_per_s"] = agg["sent_b"] / agg["obs"]
    f["bytes_received_per_s"] = agg["recv_b"] / agg["obs"]
    f["packets_sent_per_s"] = agg["sent_p"] / agg["obs"]
    f["packets_received_per_s"] = agg["recv_p"] / agg["obs"]
    f["upload_out_per_s"] = agg["up"] / agg["obs"]
    tot = agg["sent_b"] + agg["recv_b"]
    f["bytes_sent_share"] = np.where(tot > 0, agg["sent_b"] / tot.where(tot > 0, 1), 0.5)

    xo, xi = x[out], x[inn]
    zero = pd.Series(0.0, index=agg.index)

    def fill(s: pd.Series, default: float = 0.0) -> pd.Series:
        return s.reindex(agg.index).fillna(default).astype(float)

    f["remote_ips_out"] = fill(xo.groupby(keys)["remote"].nunique())
    f["remote_ips_in"] = fill(xi.groupby(keys)["remote"].nunique())
    f["remote_24s_out"] = fill(xo.assign(net=_remote_net(xo["remote"])).groupby(keys)["net"].nunique())
    f["service_ports_out"] = fill(xo.groupby(keys)["port"].nunique())
    f["local_ports_in"] = fill(xi.groupby(keys)["port"].nunique())
    f["remote_ip_entropy_out"] = fill(_entropy(xo, keys, "remote"))
    f["service_port_entropy_out"] = fill(_entropy(xo, keys, "port"))
    f["remote_ip_entropy_in"] = fill(_entropy(xi, keys, "remote"))
    f["failed_ratio_out"] = np.where(agg["tcp_o"] > 0, agg["fail_o"] / agg["tcp_o"].clip(lower=1), 0.0)
    f["failed_ratio_in"] = np.where(agg["tcp_i"] > 0, agg["fail_i"] / agg["tcp_i"].clip(lower=1), 0.0)
    f["failed_out_per_min"] = agg["fail_o"] * per_min
    f["failed_in_per_min"] = agg["fail_i"] * per_min
    f["sensitive_share_out"] = np.where(agg["n_out"] > 0, agg["sens_o"] / agg["n_out"].clip(lower=1), 0.0)
    f["sensitive_share_in"] = np.where(n_in > 0, agg["sens_i"] / n_in.clip(lower=1), 0.0)
    f["sensitive_out_per_min"] = agg["ssens_o"] * per_min
    f["sensitive_in_per_min"] = agg["ssens_i"] * per_min
    f["short_sensitive_out_per_min"] = agg["short_o"] * per_min
    f["short_sensitive_in_per_min"] = agg["short_i"] * per_min
    services = fill(xo.groupby(keys)[["remote", "port"]].value_counts().groupby(level=[0, 1]).size())
    f["flows_per_service_out"] = np.where(services > 0, agg["n_out"] / services.clip(lower=1), 0.0)
    f["max_flows_per_service_out"] = fill(xo.groupby([*keys, "remote", "port"]).size().groupby(level=[0, 1]).max())
    f["max_flows_per_service_in"] = fill(xi.groupby([*keys, "remote", "port"]).size().groupby(level=[0, 1]).max())
    f["max_ports_per_remote_out"] = fill(xo.groupby([*keys, "remote"])["port"].nunique().groupby(level=[0, 1]).max())
    f["max_remotes_per_port_out"] = fill(xo.groupby([*keys, "port"])["remote"].nunique().groupby(level=[0, 1]).max())
    f["max_remotes_per_port_in"] = fill(xi.groupby([*keys, "port"])["remote"].nunique().groupby(level=[0, 1]).max())
    # new remotes: first contact (either direction) at or after the window start
    fc = xo[["ent", "k", "remote"]].drop_duplicates().merge(first_contact.reset_index(), on=["ent", "remote"])
    fc["new"] = fc["first_contact"].to_numpy() >= fc["k"].to_numpy() * H
    f["new_remote_share_out"] = fill(fc.groupby(keys)["new"].mean())
    ent_idx = f.index.get_level_values(0).to_numpy()
    k_idx = f.index.get_level_values(1).to_numpy()
    hist = (k_idx * H - first_seen.reindex(ent_idx).to_numpy()) / NS
    f["history_s"] = np.clip(hist, 0.0, HISTORY_CAP_S)
    has_history = pd.Series(hist >= spec.window_s, index=f.index)
    for name, part, col in (("new_ports_out", xo, "port"), ("new_remotes_out", xo, "remote"),
                            ("new_local_ports_in", xi, "port"), ("new_remotes_in", xi, "remote")):  # fmt: skip
        first_use = part.groupby(["ent", col], observed=True)["start"].min().rename("first_use")
        u = part[["ent", "k", col]].drop_duplicates().merge(first_use.reset_index(), on=["ent", col])
        u["new"] = u["first_use"].to_numpy() >= u["k"].to_numpy() * H
        f[name] = fill(u.groupby(keys)["new"].sum()).where(has_history, 0.0)
    f["new_remote_share_out"] = f["new_remote_share_out"].where(has_history, 0.0)
    f["beacon_score_out"] = fill(x[started & out].groupby(keys)["beacon"].max())
    long_ = x[out & ((x["k"].to_numpy() * H + W - x["start"].to_numpy()) >= W) & ~started]
    f["persistent_flows_out"] = fill(long_.groupby(keys).size())
    f["persistent_bytes_per_s_out"] = (
        fill(long_.assign(v=long_["frac"] * (long_["sent_b"] + long_["recv_b"])).groupby(keys)["v"].sum()) / agg["obs"]
    )
    gap_s = long_["dur_s"] / np.maximum(long_["tot_p"] - 1, 1)
    idle = (long_["proto"] == 6) & ~long_["failed"] & (gap_s >= IDLE_GAP_S)  # held open: the handshake completed
    f["idle_persistent_flows_out"] = fill(long_[idle].groupby(keys).size())
    f["dns_queries_per_min"] = agg["dns"] * per_min
    xd = x[x["dns"].to_numpy()]
    f["dns_query_mean_bytes"] = fill(xd.groupby(keys)["req_size"].mean())
    f["dns_large_queries_per_min"] = fill(xd[xd["req_size"] > DNS_LARGE_REQUEST_B].groupby(keys).size()) * per_min
    xdi = x[started & inn & (port == DNS_PORT)]
    large_in = fill(xdi[xdi["req_size"] > DNS_LARGE_REQUEST_B].groupby(keys).size()) * per_min
    f["dns_large_originated_per_min"] = (f["dns_large_queries_per_min"] - large_in).clip(lower=0.0)
    f["udp_share_out"] = np.where(agg["n_out"] > 0, agg["udp_o"] / agg["n_out"].clip(lower=1), 0.0)
    f["icmp_share_out"] = np.where(agg["n_out"] > 0, agg["icmp_o"] / agg["n_out"].clip(lower=1), 0.0)
    xs = x[started & out]
    f["mean_flow_bytes_out"] = fill(xs.groupby(keys)["tot_b"].mean())
    f["mean_flow_duration_s_out"] = fill(xs.groupby(keys)["dur_s"].mean())
    f["mean_packets_per_flow_out"] = fill(xs.groupby(keys)["tot_p"].mean())
    del zero
    _add_baselines(f, round(spec.window_s / spec.hop_s))

    ents = x.drop_duplicates("ent").set_index("ent")
    f = f.reset_index()
    e = ents.reindex(f["ent"].to_numpy())
    f.insert(0, "scope_type", "vm")
    f.insert(1, "scope", (e["tenant"].astype(str) + "/" + e["vm"].astype(str)).to_numpy())
    f.insert(2, "tenant", e["tenant"].astype(str).to_numpy())
    f.insert(3, "vm", e["vm"].astype(str).to_numpy())
    f.insert(4, "ip", e["ip"].astype(str).to_numpy())
    f.insert(5, "capture_point", e["capture_point"].astype(str).to_numpy())
    f["window_start_ns"] = f["k"].to_numpy(np.int64) * H
    f["window_s"] = float(spec.window_s)
    f = f.sort_values(["window_start_ns", "scope"], kind="stable").reset_index(drop=True)
    return f[cols]


def _add_baselines(f: pd.DataFrame, lag_windows: int) -> None:
    """``*_vs_baseline``: value / the entity's median over windows that ended before this one began."""
    idx = f.index.to_frame(index=False)
    for name, source in _BASELINED.items():
        d = idx.assign(v=f[source].to_numpy())
        d["med"] = d.groupby("ent")["v"].transform(lambda s: s.expanding().median())
        right = d[["ent", "k", "med"]].rename(columns={"k": "k_prev"}).sort_values("k_prev")
        left = d[["ent", "k"]].assign(k_prev=d["k"] - lag_windows).reset_index().sort_values("k_prev")
        m = pd.merge_asof(left, right, on="k_prev", by="ent", direction="backward").set_index("index").sort_index()
        base = m["med"].to_numpy()
        v = f[source].to_numpy()
        ratio = np.where(np.isnan(base), 1.0, (v + 1.0) / (np.nan_to_num(base) + 1.0))
        f[name] = ratio
