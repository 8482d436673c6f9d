"""Tenant windows: one row per VM (local endpoint) per sliding time window, from its flows.

Every flow is seen from both of its endpoints: as an *outgoing* flow of the initiator and an *incoming* flow of
the responder. An endpoint is an entity when the tenant map knows it (a VM); with no tenant map (a real capture
of unknown hosts) every address is one. Windows are ``window_s`` long and start every ``hop_s`` seconds on
epoch-aligned boundaries; a flow belongs to every window it overlaps, its bytes and packets spread over them in
proportion to the overlap. Rates are per second (or per minute) of the *observed* part of the window, so a short
capture and a long one give comparable values. Each entity is read at the capture point that saw most of its
flows (a VM tap, host uplink and gateway would otherwise count one connection thrice). The catalogue of features
is :data:`~netsentry.pipeline.features.tenant.catalogue.TENANT_FEATURES` (rendered in ``docs/features.md``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from netsentry.pipeline.core.errors import SchemaError
from netsentry.pipeline.core.units import NS_PER_S
from netsentry.pipeline.features.tenant.catalogue import (
    BASELINED,
    DNS_LARGE_REQUEST_B,
    DNS_PORT,
    HISTORY_CAP_S,
    ICMP_PROTOCOLS,
    IDLE_GAP_S,
    KEY_COLUMNS,
    MIN_OBSERVED_S,
    NEW_SERVICE_S,
    SENSITIVE_PORTS,
    SHORT_NS,
    TENANT_FEATURES,
)
from netsentry.pipeline.features.tenant.dns import DNS_TABLE_FEATURES, dns_window_features
from netsentry.pipeline.features.tenant.endpoints import (
    beacon_scores,
    flow_sides,
    local_entities,
    service_first_use,
    solo_remote,
    window_rows,
)
from netsentry.pipeline.features.tenant.mining import mining_window_features

_KEYS = ["entity_id", "window_id"]
"""The index of a feature row: entity and window number (its start is ``window_id * hop_ns``)."""


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

    @property
    def hop_ns(self) -> int:
        return int(self.hop_s * NS_PER_S)

    @property
    def window_ns(self) -> int:
        return int(self.window_s * NS_PER_S)


def tenant_windows(
    flows: pa.Table, spec: WindowSpec | None = None, dns: pa.Table | None = None, stratum: pa.Table | None = None
) -> pd.DataFrame:
    """Flows (+ the dns and stratum tables, when the capture has them) → one row per (entity, window) with
    :data:`TENANT_FEATURES`; empty frame when there are no flows."""
    spec = spec or WindowSpec()
    cols = list(KEY_COLUMNS) + list(TENANT_FEATURES)
    if flows.num_rows == 0:
        return pd.DataFrame({c: pd.Series(dtype="float64") for c in cols})
    sides = local_entities(flow_sides(flows))
    if sides.empty:
        return pd.DataFrame({c: pd.Series(dtype="float64") for c in cols})
    t_min = int(min(sides["start"].min(), sides["end"].min()))
    t_max = int(sides["end"].max())
    sides["beacon"] = beacon_scores(sides)
    sides["solo"] = solo_remote(sides)
    sides["service_first"], sides["entity_first"] = service_first_use(sides)
    x = _flag_rows(window_rows(sides, spec.hop_ns, spec.window_ns, t_min, t_max), spec, t_min, t_max)
    counts = _window_counts(x)
    per_min = 60.0 / counts["observed_s"]
    outgoing, incoming = x[x["out"].to_numpy()], x[~x["out"].to_numpy()]
    f = pd.DataFrame(index=counts.index)
    _connection_volumes(f, counts, per_min)
    _peer_spread(f, outgoing, incoming)
    _failed_handshakes(f, counts, per_min)
    _sensitive_port_share(f, counts, per_min)
    _repeated_services(f, counts, outgoing, incoming)
    _novelty(f, sides, outgoing, incoming, spec)
    _short_repeats(f, x, per_min, spec)
    _beacon_and_persistent_flows(f, x, counts, spec)
    _dns_queries(f, x, counts, per_min, dns, spec)
    mining_window_features(f, x, per_min, stratum, spec.hop_ns, spec.window_ns)
    _outgoing_mix(f, x, counts)
    _add_baselines(f, round(spec.window_s / spec.hop_s))
    return _with_keys(f, x, spec)[cols]


def _fill(s: pd.Series, index: pd.Index, default: float = 0.0) -> pd.Series:
    """``s`` on every feature row (``default`` where the row has no value), as floats."""
    return s.reindex(index).fillna(default).astype(float)


def _flag_rows(x: pd.DataFrame, spec: WindowSpec, t_min: int, t_max: int) -> pd.DataFrame:
    """Per (endpoint, window) row: the window's observed seconds and the flags and shares that counts sum."""
    hop_ns, window_ns = spec.hop_ns, spec.window_ns
    ws = x["window_id"].to_numpy() * hop_ns
    # exposure is the capture's span, not the entity's own first/last packet: its silence was observable too,
    # and a span bounded by its own events overstates the rate (n events span only n - 1 gaps)
    observed_s = (np.minimum(ws + window_ns, t_max) - np.maximum(ws, t_min)) / NS_PER_S
    x["observed_s"] = np.maximum(observed_s, min(spec.window_s, MIN_OBSERVED_S))
    out, inn = x["out"].to_numpy(), ~x["out"].to_numpy()
    started = x["started"].to_numpy()
    proto = x["proto"].to_numpy()
    port = x["port"].to_numpy()
    sensitive = np.isin(port, SENSITIVE_PORTS)
    dur = (x["end"] - x["start"]).to_numpy()
    short = (dur < SHORT_NS) & ~x["cut"].to_numpy()
    return x.assign(
        started_out=started & out, started_in=started & inn,
        failed_out=x["failed"].to_numpy() & out, failed_in=x["failed"].to_numpy() & inn,
        sensitive_out=sensitive & out, sensitive_in=sensitive & inn,
        udp_out=(proto == 17) & out, icmp_out=np.isin(proto, (1, 58)) & out,
        dns_query=started & out & (port == DNS_PORT),
        started_sensitive_out=started & out & sensitive,
        started_sensitive_in=started & inn & sensitive,
        short_sensitive_out=started & out & sensitive & short,
        short_sensitive_in=started & inn & sensitive & short,
        started_short=started & short & x["exchange"].to_numpy(),
        started_wordless=started & x["wordless"].to_numpy(),
        fresh=_begun_lately(x, spec),
        window_upload_b=x["frac"] * x["sent_b"] * out,
        window_sent_b=x["frac"] * x["sent_b"], window_recv_b=x["frac"] * x["recv_b"],
        window_sent_p=x["frac"] * x["sent_p"], window_recv_p=x["frac"] * x["recv_p"],
        flow_bytes=x["sent_b"] + x["recv_b"], flow_packets=x["sent_p"] + x["recv_p"],
        flow_duration_s=dur / NS_PER_S,
    )  # fmt: skip


def _window_counts(x: pd.DataFrame) -> pd.DataFrame:
    """Per (entity, window): observed seconds, flow counts by kind and the window's share of bytes and packets."""
    return x.groupby(_KEYS, sort=True).agg(
        observed_s=("observed_s", "first"), active_flows=("flow", "size"),
        started_out=("started_out", "sum"), started_in=("started_in", "sum"),
        failed_out=("failed_out", "sum"),
        failed_in=("failed_in", "sum"), sensitive_out=("sensitive_out", "sum"), sensitive_in=("sensitive_in", "sum"),
        udp_out=("udp_out", "sum"), icmp_out=("icmp_out", "sum"), dns_queries=("dns_query", "sum"),
        sent_b=("window_sent_b", "sum"), recv_b=("window_recv_b", "sum"), sent_p=("window_sent_p", "sum"),
        recv_p=("window_recv_p", "sum"), flows_out=("out", "sum"),
        started_sensitive_out=("started_sensitive_out", "sum"), started_sensitive_in=("started_sensitive_in", "sum"),
        short_sensitive_out=("short_sensitive_out", "sum"), short_sensitive_in=("short_sensitive_in", "sum"),
        upload_b=("window_upload_b", "sum"),
    )  # fmt: skip


def _connection_volumes(f: pd.DataFrame, counts: pd.DataFrame, per_min: pd.Series) -> None:
    """Observed time, connection rates, and bytes and packets per second each way."""
    observed = counts["observed_s"]
    f["observed_s"] = observed
    f["active_flows"] = counts["active_flows"].astype(float)
    f["flows_out_per_min"] = counts["started_out"] * per_min
    f["flows_in_per_min"] = counts["started_in"] * per_min
    f["bytes_sent_per_s"] = counts["sent_b"] / observed
    f["bytes_received_per_s"] = counts["recv_b"] / observed
    f["packets_sent_per_s"] = counts["sent_p"] / observed
    f["packets_received_per_s"] = counts["recv_p"] / observed
    f["upload_out_per_s"] = counts["upload_b"] / observed
    total = counts["sent_b"] + counts["recv_b"]
    f["bytes_sent_share"] = np.where(total > 0, counts["sent_b"] / total.where(total > 0, 1), 0.5)


def _entropy(x: pd.DataFrame, value: str) -> pd.Series:
    """Shannon entropy (bits) of ``value`` per (entity, window)."""
    c = x.groupby([*_KEYS, value], observed=True).size()
    tot = c.groupby(level=list(range(len(_KEYS)))).transform("sum")
    p = c / tot
    return (-(p * np.log2(p))).groupby(level=list(range(len(_KEYS)))).sum()


def _remote_net(remote: pd.Series) -> pd.Series:
    """An address's /24 (IPv4) or /64 (IPv6) prefix as text."""
    r = remote.astype(str)
    v4 = ~r.str.contains(":", regex=False)
    return pd.Series(np.where(v4, r.str.rsplit(".", n=1).str[0], r.str.split(":").str[:4].str.join(":")),
                     index=remote.index)  # fmt: skip


def _peer_spread(f: pd.DataFrame, outgoing: pd.DataFrame, incoming: pd.DataFrame) -> None:
    """How many distinct remotes, networks and ports, and how evenly the flows spread over them."""
    idx = f.index
    f["remote_ips_out"] = _fill(outgoing.groupby(_KEYS)["remote"].nunique(), idx)
    f["remote_ips_in"] = _fill(incoming.groupby(_KEYS)["remote"].nunique(), idx)
    nets = outgoing.assign(net=_remote_net(outgoing["remote"]))
    f["remote_24s_out"] = _fill(nets.groupby(_KEYS)["net"].nunique(), idx)
    f["service_ports_out"] = _fill(outgoing.groupby(_KEYS)["port"].nunique(), idx)
    f["local_ports_in"] = _fill(incoming.groupby(_KEYS)["port"].nunique(), idx)
    f["remote_ip_entropy_out"] = _fill(_entropy(outgoing, "remote"), idx)
    f["service_port_entropy_out"] = _fill(_entropy(outgoing, "port"), idx)
    f["remote_ip_entropy_in"] = _fill(_entropy(incoming, "remote"), idx)


def _failed_handshakes(f: pd.DataFrame, counts: pd.DataFrame, per_min: pd.Series) -> None:
    """Flows that got nowhere (handshakes never completed, unanswered UDP/ICMP): share of flows and rate, each way."""
    flows_out = counts["flows_out"]
    flows_in = counts["active_flows"] - flows_out
    f["failed_ratio_out"] = np.where(flows_out > 0, counts["failed_out"] / flows_out.clip(lower=1), 0.0)
    f["failed_ratio_in"] = np.where(flows_in > 0, counts["failed_in"] / flows_in.clip(lower=1), 0.0)
    f["failed_out_per_min"] = counts["failed_out"] * per_min
    f["failed_in_per_min"] = counts["failed_in"] * per_min


def _sensitive_port_share(f: pd.DataFrame, counts: pd.DataFrame, per_min: pd.Series) -> None:
    """Flows to remote-login and file-sharing ports: share, rate, and rate of the short ones (guesses, probes)."""
    flows_out = counts["flows_out"]
    flows_in = counts["active_flows"] - flows_out
    f["sensitive_share_out"] = np.where(flows_out > 0, counts["sensitive_out"] / flows_out.clip(lower=1), 0.0)
    f["sensitive_share_in"] = np.where(flows_in > 0, counts["sensitive_in"] / flows_in.clip(lower=1), 0.0)
    f["sensitive_out_per_min"] = counts["started_sensitive_out"] * per_min
    f["sensitive_in_per_min"] = counts["started_sensitive_in"] * per_min
    f["short_sensitive_out_per_min"] = counts["short_sensitive_out"] * per_min
    f["short_sensitive_in_per_min"] = counts["short_sensitive_in"] * per_min


def _max_per_window(grouped: pd.Series) -> pd.Series:
    """The largest value of a per-(entity, window, …) series in each (entity, window)."""
    return grouped.groupby(level=[0, 1]).max()


def _repeated_services(f: pd.DataFrame, counts: pd.DataFrame, outgoing: pd.DataFrame, incoming: pd.DataFrame) -> None:
    """Repeats and fan-out: flows per (remote, port), ports per remote (vertical scan), remotes per port."""
    idx = f.index
    services = _fill(outgoing.groupby(_KEYS)[["remote", "port"]].value_counts().groupby(level=[0, 1]).size(), idx)
    f["flows_per_service_out"] = np.where(services > 0, counts["flows_out"] / services.clip(lower=1), 0.0)
    f["max_flows_per_service_out"] = _fill(_max_per_window(outgoing.groupby([*_KEYS, "remote", "port"]).size()), idx)
    f["max_flows_per_service_in"] = _fill(_max_per_window(incoming.groupby([*_KEYS, "remote", "port"]).size()), idx)
    ported = outgoing[~np.isin(outgoing["proto"].to_numpy(), ICMP_PROTOCOLS)]  # a ping probes no port
    ports_per_remote = ported.groupby([*_KEYS, "remote"])["port"].nunique()
    f["max_ports_per_remote_out"] = _fill(_max_per_window(ports_per_remote), idx)
    f["max_remotes_per_port_out"] = _fill(_max_per_window(outgoing.groupby([*_KEYS, "port"])["remote"].nunique()), idx)
    f["max_remotes_per_port_in"] = _fill(_max_per_window(incoming.groupby([*_KEYS, "port"])["remote"].nunique()), idx)
    by_remote_port = incoming.groupby([*_KEYS, "proto", "remote_port"])["remote"].nunique()
    f["max_remotes_per_remote_port_in"] = _fill(_max_per_window(by_remote_port), idx)


def _short_repeats(f: pd.DataFrame, x: pd.DataFrame, per_min: pd.Series, spec: WindowSpec) -> None:
    """Repeated short connections to one service, any port and protocol: guesses, not sessions; and the same to a
    service begun lately (:func:`_begun_lately`), unlike an app's steady short connections to its database (zero
    until the entity has a window of history: everything is new to a capture); and answered TCP connections that
    said nothing, repeated from one remote to one local service (a flood from a real source needs no history to
    show)."""
    idx = f.index
    short = x[x["started_short"].to_numpy()]
    has_history = f["history_s"] >= spec.window_s
    wordless = x[x["started_wordless"].to_numpy() & ~x["out"].to_numpy()]
    most = _max_per_window(wordless.groupby([*_KEYS, "remote", "port"]).size())
    f["wordless_per_service_in_per_min"] = _fill(most, idx) * per_min
    for side, out in (("out", True), ("in", False)):
        part = short[short["out"].to_numpy() == out]
        most = _max_per_window(part.groupby([*_KEYS, "proto", "remote", "port"]).size())
        f[f"short_per_service_{side}_per_min"] = _fill(most, idx) * per_min
        fresh = part[part["fresh"].to_numpy()]
        most = _max_per_window(fresh.groupby([*_KEYS, "proto", "remote", "port"]).size())
        f[f"new_service_short_{side}_per_min"] = (_fill(most, idx) * per_min).where(has_history, 0.0)


def _begun_lately(x: pd.DataFrame, spec: WindowSpec) -> np.ndarray:
    """Per window row: its service (remote, port) was begun at most :data:`NEW_SERVICE_S` before the window, after
    the entity had been seen for a window (what it did from the start is its habit, not a change)."""
    first, entity_first = x["service_first"].to_numpy(), x["entity_first"].to_numpy()
    lately = first >= x["window_id"].to_numpy() * spec.hop_ns - int(NEW_SERVICE_S * NS_PER_S)
    return lately & (first - entity_first >= spec.window_ns)


def _novelty(
    f: pd.DataFrame, sides: pd.DataFrame, outgoing: pd.DataFrame, incoming: pd.DataFrame, spec: WindowSpec
) -> None:
    """The entity's history before each window, and the remotes and ports it had never used before it."""
    hop_ns, idx = spec.hop_ns, f.index
    first_seen = sides.groupby("entity_id")["start"].min()
    # new remotes: first contact (either direction) at or after the window start
    first_contact = sides.groupby(["entity_id", "remote"], observed=True)["start"].min().rename("first_contact")
    contacts = (
        outgoing[[*_KEYS, "remote"]].drop_duplicates().merge(first_contact.reset_index(), on=["entity_id", "remote"])
    )
    contacts["new"] = contacts["first_contact"].to_numpy() >= contacts["window_id"].to_numpy() * hop_ns
    new_remote_share = _fill(contacts.groupby(_KEYS)["new"].mean(), idx)
    entity_id = idx.get_level_values(0).to_numpy()
    window_id = idx.get_level_values(1).to_numpy()
    history_s = (window_id * hop_ns - first_seen.reindex(entity_id).to_numpy()) / NS_PER_S
    f["history_s"] = np.clip(history_s, 0.0, HISTORY_CAP_S)
    has_history = pd.Series(history_s >= spec.window_s, index=idx)
    for name, part, col in (
        ("new_ports_out", outgoing, "port"),
        ("new_remotes_out", outgoing, "remote"),
        ("new_local_ports_in", incoming, "port"),
        ("new_remotes_in", incoming, "remote"),
    ):
        first_use = part.groupby(["entity_id", col], observed=True)["start"].min().rename("first_use")
        used = part[[*_KEYS, col]].drop_duplicates().merge(first_use.reset_index(), on=["entity_id", col])
        used["new"] = used["first_use"].to_numpy() >= used["window_id"].to_numpy() * hop_ns
        f[name] = _fill(used.groupby(_KEYS)["new"].sum(), idx).where(has_history, 0.0)
    f["new_remote_share_out"] = new_remote_share.where(has_history, 0.0)


def _beacon_and_persistent_flows(f: pd.DataFrame, x: pd.DataFrame, counts: pd.DataFrame, spec: WindowSpec) -> None:
    """Timer-like repeats (beacon score) and outgoing flows that have lasted a window or more, idle or busy."""
    idx = f.index
    out, started = x["out"].to_numpy(), x["started"].to_numpy()
    f["beacon_score_out"] = _fill(x[started & out].groupby(_KEYS)["beacon"].max(), idx)
    window_end = x["window_id"].to_numpy() * spec.hop_ns + spec.window_ns
    persistent = x[out & ((window_end - x["start"].to_numpy()) >= spec.window_ns) & ~started]
    f["persistent_flows_out"] = _fill(persistent.groupby(_KEYS).size(), idx)
    window_bytes = persistent.assign(v=persistent["frac"] * (persistent["sent_b"] + persistent["recv_b"]))
    f["persistent_bytes_per_s_out"] = _fill(window_bytes.groupby(_KEYS)["v"].sum(), idx) / counts["observed_s"]
    gap_s = persistent["flow_duration_s"] / np.maximum(persistent["flow_packets"] - 1, 1)
    # held open: the handshake completed
    idle = (persistent["proto"] == 6) & ~persistent["failed"] & (gap_s >= IDLE_GAP_S)
    f["idle_persistent_flows_out"] = _fill(persistent[idle].groupby(_KEYS).size(), idx)
    fresh = x[started & out & x["fresh"].to_numpy()]
    f["new_beacon_score_out"] = _fill(fresh.groupby(_KEYS)["beacon"].max(), idx)
    f["solo_persistent_flows_out"] = _fill(persistent.groupby(_KEYS)["solo"].sum(), idx)
    solo_bytes = window_bytes["v"] * window_bytes["solo"]
    f["solo_persistent_bytes_per_s_out"] = (
        _fill(solo_bytes.groupby([window_bytes[k] for k in _KEYS]).sum(), idx) / counts["observed_s"]
    )


def _dns_queries(
    f: pd.DataFrame, x: pd.DataFrame, counts: pd.DataFrame, per_min: pd.Series, dns: pa.Table | None, spec: WindowSpec
) -> None:
    """DNS query rate, names and types per query from the dns table (per flow to port 53 when there is none)."""
    idx = f.index
    for name in DNS_TABLE_FEATURES:
        f[name] = 0.0
    f["dns_queries_per_min"] = counts["dns_queries"] * per_min
    queries = x[x["dns_query"].to_numpy()]
    f["dns_query_mean_bytes"] = _fill(queries.groupby(_KEYS)["req_size"].mean(), idx)
    large_out = queries[queries["req_size"] > DNS_LARGE_REQUEST_B].groupby(_KEYS).size()
    f["dns_large_queries_per_min"] = _fill(large_out, idx) * per_min
    received = x[x["started"].to_numpy() & ~x["out"].to_numpy() & (x["port"].to_numpy() == DNS_PORT)]
    large_in = _fill(received[received["req_size"] > DNS_LARGE_REQUEST_B].groupby(_KEYS).size(), idx) * per_min
    f["dns_large_originated_per_min"] = (f["dns_large_queries_per_min"] - large_in).clip(lower=0.0)
    f["dns_large_terminated_per_min"] = (large_in - f["dns_large_queries_per_min"]).clip(lower=0.0)
    if dns is not None and dns.num_rows:
        dns_window_features(f, x, per_min, dns, spec.hop_ns, spec.window_ns)


def _outgoing_mix(f: pd.DataFrame, x: pd.DataFrame, counts: pd.DataFrame) -> None:
    """UDP and ICMP shares of the outgoing flows, and the mean size and duration of those started in the window."""
    idx = f.index
    flows_out = counts["flows_out"]
    f["udp_share_out"] = np.where(flows_out > 0, counts["udp_out"] / flows_out.clip(lower=1), 0.0)
    f["icmp_share_out"] = np.where(flows_out > 0, counts["icmp_out"] / flows_out.clip(lower=1), 0.0)
    started_out = x[x["started"].to_numpy() & x["out"].to_numpy()]
    f["mean_flow_bytes_out"] = _fill(started_out.groupby(_KEYS)["flow_bytes"].mean(), idx)
    f["mean_flow_duration_s_out"] = _fill(started_out.groupby(_KEYS)["flow_duration_s"].mean(), idx)
    f["mean_packets_per_flow_out"] = _fill(started_out.groupby(_KEYS)["flow_packets"].mean(), idx)


def _add_baselines(f: pd.DataFrame, lag_windows: int) -> None:
    """``*_vs_baseline``: value / the entity's median over windows that ended before this one began."""
    idx = f.index.to_frame(index=False)
    for name, source in BASELINED.items():
        d = idx.assign(v=f[source].to_numpy())
        d["med"] = d.groupby("entity_id")["v"].transform(lambda s: s.expanding().median())
        right = d[["entity_id", "window_id", "med"]].rename(columns={"window_id": "prev"}).sort_values("prev")
        left = d[["entity_id", "window_id"]].assign(prev=d["window_id"] - lag_windows).reset_index().sort_values("prev")
        m = pd.merge_asof(left, right, on="prev", by="entity_id", direction="backward").set_index("index").sort_index()
        base = m["med"].to_numpy()
        v = f[source].to_numpy()
        f[name] = np.where(np.isnan(base), 1.0, (v + 1.0) / (np.nan_to_num(base) + 1.0))


def _with_keys(f: pd.DataFrame, x: pd.DataFrame, spec: WindowSpec) -> pd.DataFrame:
    """Feature rows → the table's rows: :data:`KEY_COLUMNS` first, by window start, then scope."""
    entities = x.drop_duplicates("entity_id").set_index("entity_id")
    f = f.reset_index()
    e = entities.reindex(f["entity_id"].to_numpy())
    f.insert(0, "scope_type", "vm")
    f.insert(1, "scope", (e["tenant"].astype(str) + "/" + e["vm"].astype(str)).to_numpy())
    f.insert(2, "tenant", e["tenant"].astype(str).to_numpy())
    f.insert(3, "vm", e["vm"].astype(str).to_numpy())
    f.insert(4, "ip", e["ip"].astype(str).to_numpy())
    f.insert(5, "capture_point", e["capture_point"].astype(str).to_numpy())
    f["window_start_ns"] = f["window_id"].to_numpy(np.int64) * spec.hop_ns
    f["window_s"] = float(spec.window_s)
    return f.sort_values(["window_start_ns", "scope"], kind="stable").reset_index(drop=True)
