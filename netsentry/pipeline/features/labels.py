"""Ground-truth labels (``labels.csv`` as ``netsentry simulate`` writes it) and the two labellers that join them onto
feature windows.

Tenant windows: a window is labelled 1 when the observable part of a compromise label of its entity overlaps it by
at least ``min(hop, that part's duration)``, -1 (ambiguous: left out of training and metrics) when the label overlaps
it by less, and 0 otherwise. A label is observable from its start, except a timer (``period_s=P`` in its detail:
a beacon), which shows as one only from its :data:`BEACON_MIN_IATS`-th gap; before that its check-ins are single
connections, what inspect reports as "not judged". The entity matches a label by tenant and VM name when the label
names a VM, else by address (real captures have no VM names). Fault windows: see :func:`label_fault_windows`.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from netsentry.pipeline.capture.tenants import TenantMap, vm_addresses, vm_hosts
from netsentry.pipeline.core.errors import InputNotFoundError, SchemaError
from netsentry.pipeline.core.units import NS_PER_S
from netsentry.pipeline.features.faults.catalogue import SCOPE_TYPES
from netsentry.pipeline.features.tenant.catalogue import BEACON_MIN_IATS

log = logging.getLogger(__name__)

LABEL_COLUMNS = ("kind", "scenario", "scope_type", "scope", "start_ns", "end_ns", "tenant", "vm", "vni", "detail")
REQUIRED = ("kind", "scenario", "scope_type", "scope", "start_ns", "end_ns")
KINDS = ("compromise", "fault")


def read_labels(path: str | Path) -> pd.DataFrame:
    """Read and check a labels CSV; optional columns (tenant, vm, vni, detail) are filled when absent."""
    p = Path(path)
    if not p.is_file():
        raise InputNotFoundError("labels file not found", path=str(p))
    try:
        df = pd.read_csv(p, dtype={"tenant": str, "vm": str, "scope": str, "detail": str}, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise SchemaError(f"{p}: not a labels CSV ({str(e).splitlines()[0]})") from None
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise SchemaError(f"{p}: labels lack column(s) {', '.join(missing)}; expected {', '.join(LABEL_COLUMNS)}")
    bad_kind = sorted(set(df["kind"].astype(str)) - set(KINDS))
    if bad_kind:
        raise SchemaError(f"{p}: field 'kind' must be one of {', '.join(KINDS)}, got {', '.join(bad_kind)}")
    for c in ("start_ns", "end_ns"):
        v = pd.to_numeric(df[c], errors="coerce")
        if v.isna().any():
            row = int(np.flatnonzero(v.isna().to_numpy())[0]) + 2
            raise SchemaError(f"{p}: line {row}: field {c!r} must be an integer epoch time in ns")
        df[c] = v.astype(np.int64)
    if (df["end_ns"] < df["start_ns"]).any():
        row = int(np.flatnonzero((df["end_ns"] < df["start_ns"]).to_numpy())[0]) + 2
        raise SchemaError(f"{p}: line {row}: end_ns is before start_ns")
    for c in ("tenant", "vm", "detail"):
        if c not in df.columns:
            df[c] = ""
        df[c] = df[c].fillna("").astype(str)
    if "vni" not in df.columns:
        df["vni"] = 0
    df["scope"] = df["scope"].astype(str)
    return df[list(LABEL_COLUMNS)].reset_index(drop=True)


_DETAIL_PERIOD = re.compile(r"(?:^|[;\s])period_s=([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)")


def observable_from_ns(start_ns: int, detail: str) -> int:
    """When a compromise label's behaviour becomes observable: its start, or for a timer (``period_s=P`` in the
    detail) the end of its :data:`BEACON_MIN_IATS`-th gap."""
    m = _DETAIL_PERIOD.search(detail)
    return int(start_ns) if m is None else int(start_ns) + int(BEACON_MIN_IATS * float(m.group(1)) * NS_PER_S)


def label_tenant_windows(windows: pd.DataFrame, labels: pd.DataFrame, hop_s: float) -> pd.DataFrame:
    """Add ``label`` (int8: 1, 0, -1 ambiguous) and ``label_scenario`` to tenant windows."""
    out = windows.copy()
    label = np.zeros(len(out), np.int8)
    scenario = np.full(len(out), "", dtype=object)
    comp = labels[labels["kind"] == "compromise"]
    if len(out) and len(comp):
        ws = out["window_start_ns"].to_numpy(np.int64)
        we = ws + (out["window_s"].to_numpy(np.float64) * NS_PER_S).astype(np.int64)
        tenant, vm, ip = (out[c].astype(str).to_numpy() for c in ("tenant", "vm", "ip"))
        for lab in comp.itertuples(index=False):
            by_name = (vm == lab.vm) & ((tenant == lab.tenant) if lab.tenant else True)
            who = by_name if lab.vm else ip == lab.scope
            if not who.any():
                continue
            seen_from = min(observable_from_ns(lab.start_ns, str(lab.detail)), lab.end_ns)
            ov = np.minimum(we, lab.end_ns) - np.maximum(ws, seen_from)
            need = min(hop_s * NS_PER_S, max(lab.end_ns - seen_from, 1))
            touched = (np.minimum(we, lab.end_ns) - np.maximum(ws, lab.start_ns)) > 0
            pos = who & (ov >= need)
            amb = who & touched & ~pos & (label != 1)
            label[amb] = -1
            label[pos] = 1
            scenario[pos] = np.where(scenario[pos] == "", lab.scenario, scenario[pos] + "+" + lab.scenario)
    out["label"] = label
    out["label_scenario"] = scenario.astype(str)
    return out


# --------------------------------------------------------------------------- fault windows

_DETAIL_HOST = re.compile(r"(?:^|[;\s])host=([^;\s]+)")
_DETAIL_SUBNET = re.compile(r"(?:^|[;\s])subnet=([^;\s]+)")
_DETAIL_VMS = re.compile(r"(?:^|[;\s])vms=([^;\s]*)")

MIN_OBSERVABLE_PACKETS = 20
"""A host, host pair or VM that usually carries fewer packets per window cannot show a loss burst or a delay on
its host or path: its covered windows are ambiguous (-1), not faulty."""
MIN_EXPECTED_LOSSES = 3.0
"""Packets a partial loss (``loss_p`` in the label's detail) must be expected to drop in a covered window (the
scope's usual packets × ``loss_p``) for the window to be faulty: the least loss `inspect` calls evidence (three
retransmitted segments). A pair of 40 packets a window at 5 % loss drops two, often none: ambiguous (-1)."""
MIN_COVERED_SHARE = 0.5
"""Share of a fault window a fault must cover (or all of the fault, when it is shorter) for the window to be
faulty: a 1 s window the fault enters 0.3 s before its end mostly shows the healthy path (ambiguous, -1)."""
_DETAIL_LOSS_P = re.compile(r"(?:^|[;\s])loss_p=([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)")


def _in(addr: str, net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    try:
        return ipaddress.ip_address(addr) in net
    except ValueError:
        return False


def _pair_name(scope: str) -> str:
    a, sep, b = scope.partition("-")
    return "-".join(sorted((a, b))) if sep else scope


class _FaultRows:
    """The scopes of fault windows, to find the rows a fault label covers or partly relates to."""

    def __init__(self, windows: pd.DataFrame, vm_host_of: dict[str, str],
                 vm_addrs: dict[str, list[str]] | None = None) -> None:  # fmt: skip
        scope_type = windows["scope_type"].astype(str).to_numpy()
        self.scope = windows["scope"].astype(str).to_numpy().astype(object)
        self.start = windows["window_start_ns"].to_numpy(np.int64)
        self.is_cp, self.is_host, self.is_pair, self.is_vm = (scope_type == t for t in SCOPE_TYPES)
        self.vm_host_of = vm_host_of
        self.vm_host = np.array(
            [vm_host_of.get(s, "") if v else "" for s, v in zip(self.scope, self.is_vm, strict=True)], dtype=object
        )
        self.vm_addrs = vm_addrs or {}
        self._scope_series = pd.Series(self.scope, dtype=object)
        self.pair_names = set(self.scope[self.is_pair])

    def in_pair(self, host: str) -> np.ndarray:
        """host_pair rows with ``host`` at either end."""
        named = self._scope_series.str.startswith(host + "-") | self._scope_series.str.endswith("-" + host)
        return self.is_pair & named.to_numpy(bool)

    def peers(self, host: str, when: np.ndarray) -> np.ndarray:
        """Host rows whose host exchanged packets with ``host`` in the same window."""
        sc, ws = self.scope, self.start
        rows = np.flatnonzero(self.in_pair(host) & when)
        other = [s[len(host) + 1 :] if s.startswith(host + "-") else s[: -len(host) - 1] for s in sc[rows]]
        pairs = pd.MultiIndex.from_arrays([other, ws[rows]])
        return self.is_host & pd.MultiIndex.from_arrays([sc, ws]).isin(pairs)

    def in_subnet(self, cidr: str, tenant: str, only: set[str] | None = None) -> np.ndarray:
        """VM rows whose VM (of ``tenant``, when given) has an address in ``cidr`` (and among ``only``, when given); a
        VM scope without a tenant map is its address."""
        try:
            net = ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            log.warning("fault label with a bad subnet %r ignored", cidr)
            return np.zeros(len(self.scope), bool)

        def inside(scope: str) -> bool:
            if "/" in scope:
                if tenant and scope.split("/", 1)[0] != tenant:
                    return False
                addrs = self.vm_addrs.get(scope, [])
            else:
                addrs = [scope]
            return any(_in(a, net) and (only is None or a in only) for a in addrs)

        return self.is_vm & self._per_scope(inside)

    def named_in(self, cidr: str) -> np.ndarray:
        """Host and pair rows with an end named by an address in ``cidr``."""
        try:
            net = ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            return np.zeros(len(self.scope), bool)
        return (self.is_host | self.is_pair) & self._per_scope(lambda sc: any(_in(x, net) for x in sc.split("-")))

    def _per_scope(self, test: Any) -> np.ndarray:
        """``test(scope)`` for every row, evaluated once per distinct scope."""
        uniq, inverse = np.unique(self.scope.astype(str), return_inverse=True)
        return np.array([bool(test(u)) for u in uniq], dtype=bool)[inverse]

    def related(self, lab: Any, overlaps: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """(rows the label covers, rows it partly relates to) among all rows; None for an unknown scope type."""
        sc, vm_host = self.scope, self.vm_host
        kind, scope = str(lab.scope_type), str(lab.scope)
        partial = self.is_cp.copy()
        subnet = _DETAIL_SUBNET.search(str(lab.detail)) if kind == "link" else None
        if subnet:
            listed = _DETAIL_VMS.search(str(lab.detail))
            only = set(filter(None, listed.group(1).split(","))) if listed else None
            tenant = str(getattr(lab, "tenant", "") or "")
            cover = self.in_subnet(subnet.group(1), tenant, only)
            members = self.in_subnet(subnet.group(1), tenant)
            partial |= members  # the subnet's VMs not listed
            hosts = np.unique(self.vm_host[members]).tolist()
            partial |= (self.is_host & np.isin(sc, [scope, *hosts])) | self.in_pair(scope)
            partial |= self.named_in(subnet.group(1))  # the subnet's router, seen as a host by its address
        elif kind == "host_pair" or (kind == "link" and _pair_name(scope) in self.pair_names):
            name = _pair_name(scope)
            a, _, b = name.partition("-")
            cover = self.is_pair & (sc == name)
            partial |= (self.is_host & ((sc == a) | (sc == b))) | (self.is_vm & np.isin(vm_host, [a, b, ""]))
        elif kind in ("host", "link"):
            cover = (self.is_host & (sc == scope)) | self.in_pair(scope) | (self.is_vm & (vm_host == scope))
            partial |= (self.is_vm & (vm_host == "")) | self.peers(scope, overlaps)
        elif kind == "vm":
            vm_name = f"{lab.tenant}/{lab.vm}" if str(lab.vm) else scope
            cover = self.is_vm & ((sc == vm_name) | (sc == scope))
            m = _DETAIL_HOST.search(str(lab.detail))
            host = m.group(1) if m else self.vm_host_of.get(vm_name, scope)  # no map: hosts are addresses
            partial |= (self.is_host & (sc == host)) | self.in_pair(host)
        else:
            return None
        return cover, partial


def label_fault_windows(windows: pd.DataFrame, labels: pd.DataFrame, tmap: TenantMap | None = None) -> pd.DataFrame:
    """Add ``label`` (int8: 1 fault, 0 normal, -1 ambiguous) and ``label_scenario`` to fault windows.

    A window overlapping a fault label in time is 1 when its scope is the label's or inside it (host H:
    host H, pairs with H, VMs on H; link/host ``gateway`` is host gateway; host_pair A-B: that pair; vm V:
    vm V; a ``link`` label with ``subnet=CIDR`` in its detail, a gateway configuration change: the VMs of its
    tenant with an address in CIDR, only those listed in ``vms=`` when it lists them) and, for the rows of
    host, pair and link faults, the scope usually carries at least :data:`MIN_OBSERVABLE_PACKETS` packets a
    window (``packets / packets_ratio``; a pair that quiet cannot show loss or delay, while a black hole still
    shows as a busy scope gone silent) and, under a partial loss (``loss_p``), enough of them to lose
    :data:`MIN_EXPECTED_LOSSES`; and the fault covers at least :data:`MIN_COVERED_SHARE` of the window (or all of
    a shorter fault). It is -1 when its scope only partly relates (it contains the label's
    scope — capture points, hosts A and B of a faulted pair, the host of a faulted VM and its pairs, the gateway,
    the cut-off subnet's other VMs, their hosts and its router — or, for a host label, it is a host that
    exchanged packets with H in that window; or the VM's host is unknown) or it is covered but too quiet or too
    briefly; else 0.
    1 wins over -1; ``label_scenario`` joins the scenarios of the 1 labels with ``+``.
    """
    out = windows.copy()
    n = len(out)
    label = np.zeros(n, np.int8)
    scenario = np.full(n, "", dtype=object)
    faults = labels[labels["kind"].astype(str) == "fault"] if len(labels) else labels
    if n == 0 or len(faults) == 0:
        out["label"] = label
        out["label_scenario"] = pd.array(scenario.astype(str), dtype="string")
        return out
    rows = _FaultRows(out, vm_hosts(tmap) if tmap is not None else {}, vm_addresses(tmap) if tmap is not None else {})
    ws = rows.start
    we = ws + np.rint(out["window_s"].to_numpy(np.float64) * NS_PER_S).astype(np.int64)
    known = {"packets", "packets_ratio"} <= set(out.columns)
    if known:  # the scope's usual traffic per window
        usual = out["packets"].to_numpy(np.float64) / np.maximum(out["packets_ratio"].to_numpy(np.float64), 1e-9)
    else:
        usual = np.full(n, float(MIN_OBSERVABLE_PACKETS))
    for lab in faults.itertuples(index=False):
        ov = (ws < int(lab.end_ns)) & (we > int(lab.start_ns))
        if not ov.any():
            continue
        covered = np.minimum(we, int(lab.end_ns)) - np.maximum(ws, int(lab.start_ns))
        enough = covered >= np.minimum(MIN_COVERED_SHARE * (we - ws), max(int(lab.end_ns) - int(lab.start_ns), 1))
        related = rows.related(lab, ov)
        if related is None:
            log.warning("fault label with unknown scope_type %r ignored", str(lab.scope_type))
            continue
        cover, partial = related
        # rows covered by a host, pair or link fault must usually be busy enough to show it; a VM's own rows
        # are taken as they are (measured on mixed: quiet VM rows ambiguous, fault ROC-AUC 0.89 → 0.93)
        path_fault = str(lab.scope_type) != "vm"
        observable = usual >= MIN_OBSERVABLE_PACKETS if path_fault else np.ones(n, bool)
        if known and path_fault and (loss := _DETAIL_LOSS_P.search(str(lab.detail))):  # partial loss: enough drops
            observable &= usual * float(loss.group(1)) >= MIN_EXPECTED_LOSSES
        pos = ov & cover & observable & enough
        label[ov & (partial | cover) & ~pos & (label == 0)] = -1
        label[pos] = 1
        scenario[pos] = np.where(scenario[pos] == "", lab.scenario, scenario[pos] + "+" + str(lab.scenario))
    out["label"] = label
    out["label_scenario"] = pd.array(scenario.astype(str), dtype="string")
    return out
