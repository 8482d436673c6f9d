"""Scope codes of fault windows: every capture point, host, host pair and VM seen, as one integer code space, and
which scopes each packet, ``tcp_events`` or flows row counts for."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from netsentry.pipeline.capture.tenants import EXTERNAL, UNKNOWN, TenantMap
from netsentry.pipeline.core.schemas import ip_text
from netsentry.pipeline.features.faults.arrays import dict_codes, distinct_rows, find_sorted
from netsentry.pipeline.features.faults.catalogue import CAPTURE_POINT, HOST, HOST_PAIR, VM


class Scopes:
    """Every scope seen so far, as one integer code space: code → (scope type, name)."""

    def __init__(self, tmap: TenantMap) -> None:
        self.tmap = tmap
        self.types: list[int] = []
        self.names: list[str] = []
        self._index: dict[tuple[int, str], int] = {}
        self._ep_keys = np.zeros(0, "S20")
        self._ep_host = np.zeros(0, np.int64)
        self._ep_vm = np.zeros(0, np.int64)
        self._ep_where = np.zeros(0, np.int64)
        self._pair_keys = np.zeros(0, np.int64)
        self._pair_code = np.zeros(0, np.int64)
        self.points: dict[str, int] = {}  # capture point → point index
        self._point_scope: list[int] = []  # point index → scope code

    def code(self, stype: int, name: str) -> int:
        c = self._index.get((stype, name))
        if c is None:
            c = self._index[(stype, name)] = len(self.names)
            self.types.append(stype)
            self.names.append(name)
        return c

    def point_codes(self, col: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, np.ndarray]:
        """Capture point column → (point index, capture_point scope code) per row."""
        codes, names = dict_codes(col)
        for n in names:
            if n not in self.points:
                self.points[n] = len(self.points)
                self._point_scope.append(self.code(CAPTURE_POINT, n))
        idx = np.array([self.points[n] for n in names], dtype=np.int64)
        pt = idx[codes] if len(idx) else np.zeros(0, np.int64)
        return pt, self.point_scope[pt]

    @property
    def point_scope(self) -> np.ndarray:
        """Point index → its capture_point scope code."""
        return np.array(self._point_scope, dtype=np.int64)

    def endpoints(self, vni: np.ndarray, ip16: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(host scope code, vm scope code or -1, location) per endpoint; each distinct endpoint is resolved
        once. The location tells network paths apart: the host scope code for an address on a declared
        (non-gateway) host, else a negative code of its own (external addresses, unmapped ones)."""
        n = len(vni)
        key = np.empty((n, 20), np.uint8)
        key[:, :4] = vni.astype("<u4").view(np.uint8).reshape(n, 4)
        key[:, 4:] = ip16
        uniq, inverse = distinct_rows(key)
        uk = uniq.view("S20").ravel()
        pos, known = find_sorted(self._ep_keys, uk)
        if not known.all():
            self._add_endpoints(uk[~known])
            pos = np.searchsorted(self._ep_keys, uk)
        return self._ep_host[pos][inverse], self._ep_vm[pos][inverse], self._ep_where[pos][inverse]

    def _add_endpoints(self, keys: np.ndarray) -> None:
        raw = np.frombuffer(keys.astype("S20").tobytes(), np.uint8).reshape(-1, 20)
        vni = np.ascontiguousarray(raw[:, :4]).view("<u4").ravel()
        ip = np.ascontiguousarray(raw[:, 4:])
        hosts = self.tmap.endpoint_hosts(vni, ip)
        hnames = hosts.dictionary.to_pylist()
        hidx = hosts.indices.to_numpy()
        used = np.unique(hidx)
        hcode = np.zeros(len(hnames), np.int64)
        hcode[used] = [self.code(HOST, hnames[i]) for i in used]
        lab = self.tmap.lookup(vni, ip)
        vm = np.full(len(keys), -1, np.int64)
        inside = np.flatnonzero(lab.tenant != 0)
        if len(inside):
            texts = ip_text(ip[inside])
            for j, i in enumerate(inside):
                t, v = lab.tenants[lab.tenant[i]], lab.vms[lab.vm[i]]
                vm[i] = self.code(VM, texts[j] if v in (UNKNOWN, EXTERNAL) else f"{t}/{v}")
        declared = (hidx < len(self.tmap.hosts)) & (np.array(hnames, dtype=object)[hidx] != self.tmap.gateway)
        where = np.where(declared, hcode[hidx], -1 - len(self._ep_keys) - np.arange(len(keys)))
        all_keys = np.concatenate([self._ep_keys, keys])
        order = np.argsort(all_keys, kind="stable")
        self._ep_keys = all_keys[order]
        self._ep_host = np.concatenate([self._ep_host, hcode[hidx]])[order]
        self._ep_vm = np.concatenate([self._ep_vm, vm])[order]
        self._ep_where = np.concatenate([self._ep_where, where])[order]

    def pairs(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """host_pair scope code of host codes ``a != b`` (named ``A-B``, the names sorted)."""
        key = (np.minimum(a, b) << 32) | np.maximum(a, b)
        inverse, uk = pd.factorize(key)
        pos, known = find_sorted(self._pair_keys, uk)
        if not known.all():
            new = uk[~known]
            names = [sorted((self.names[k >> 32], self.names[k & 0xFFFFFFFF])) for k in new]
            codes = [self.code(HOST_PAIR, "-".join(pair)) for pair in names]
            all_keys = np.concatenate([self._pair_keys, new])
            order = np.argsort(all_keys, kind="stable")
            self._pair_keys = all_keys[order]
            self._pair_code = np.concatenate([self._pair_code, np.array(codes, np.int64)])[order]
            pos = np.searchsorted(self._pair_keys, uk)
        return self._pair_code[pos][inverse]

    def resolve(self, vni: np.ndarray, src: np.ndarray, dst: np.ndarray) -> dict[str, np.ndarray]:
        """Scope codes of both ends of each row (see :meth:`conversations`)."""
        ends, inverse = self.conversations(vni, src, dst)
        return {k: v[inverse] for k, v in ends.items()}

    def conversations(
        self, vni: np.ndarray, src: np.ndarray, dst: np.ndarray
    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Per distinct (vni, src, dst): ``hs``/``hd`` host, ``vs``/``vd`` VM (-1: none) and ``pair`` (-1: same
        host) scope codes, ``ws``/``wd`` locations (:meth:`endpoints`); and each row's conversation index."""
        n = len(vni)
        key = np.empty((n, 36), np.uint8)
        key[:, :4] = vni.astype("<u4").view(np.uint8).reshape(n, 4)
        key[:, 4:20], key[:, 20:] = src, dst
        conv, inverse = distinct_rows(key)  # each distinct (vni, src, dst) once
        m = len(conv)
        u_vni = np.ascontiguousarray(conv[:, :4]).view("<u4").ravel()
        ends = self.endpoints(np.concatenate([u_vni, u_vni]), np.concatenate([conv[:, 4:20], conv[:, 20:]]))
        host, vm, where = ends
        out = {"hs": host[:m], "hd": host[m:], "vs": vm[:m], "vd": vm[m:], "ws": where[:m], "wd": where[m:],
               "pair": np.full(m, -1, np.int64)}  # fmt: skip
        two = out["hs"] != out["hd"]
        if two.any():
            out["pair"][two] = self.pairs(out["hs"][two], out["hd"][two])
        return out, inverse

    @staticmethod
    def memberships(cp: np.ndarray, ends: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Every (row, scope) a row counts for: its capture point, host(src), host(dst), their pair and
        the VMs at either end. Returns (row index, scope code)."""
        rows = np.arange(len(cp))
        hs, hd, vs, vd, pair = (ends[k] for k in ("hs", "hd", "vs", "vd", "pair"))
        two = pair >= 0
        vs_ok = vs >= 0
        vd_ok = (vd >= 0) & (vd != vs)
        r = np.concatenate([rows, rows, rows[two], rows[two], rows[vs_ok], rows[vd_ok]])
        s = np.concatenate([cp, hs, hd[two], pair[two], vs[vs_ok], vd[vd_ok]])
        return r, s
