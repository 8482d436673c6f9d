"""Packets a capture point saw twice because a router sent them back past it: the second copy is not a retransmission.

A capture on a router's only link (router on a stick, a SPAN of both its ports, a VXLAN underlay through a central
gateway, a man in the middle forwarding on the segment it listens to) sees a routed packet on its way in and again on
its way out: every invariant field equal (``pkt_hash``: addresses, ports, IP ID and length, TCP sequence and
acknowledgement numbers) and the TTL (IPv6 hop limit) lower, moments later. Wireshark's sequence analysis calls the
second copy a retransmission; a real retransmission leaves its sender again with the same TTL (and, from most
stacks, a new IP ID), so it is never taken for one.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

HOP_WINDOW_NS = 1_000_000_000
"""Longest a router takes to send a packet back past the capture point (queues included)."""


class HopDuplicates:
    """Drops, from one capture point's time-ordered packet chunks, each packet seen earlier at the point within
    :data:`HOP_WINDOW_NS` with the same ``pkt_hash`` and a higher TTL; counts what it dropped. Keeps the last window's
    packets between chunks, so a pair split across two chunks is found too."""

    def __init__(self, window_ns: int = HOP_WINDOW_NS) -> None:
        self.window_ns = window_ns
        self.dropped = 0
        self._hash = np.zeros(0, np.uint64)
        self._ts = np.zeros(0, np.int64)
        self._ttl = np.zeros(0, np.int64)

    def filter(self, chunk: pa.Table) -> pa.Table:
        """``chunk`` without the copies of packets already seen after a hop (row order kept)."""
        n = chunk.num_rows
        if n == 0:
            return chunk
        h = chunk.column("pkt_hash").to_numpy().astype(np.uint64, copy=False)
        ts = chunk.column("ts_ns").to_numpy().astype(np.int64, copy=False)
        ttl = chunk.column("ttl").to_numpy().astype(np.int64, copy=False)
        k = len(self._hash)
        all_h, all_ts = np.concatenate([self._hash, h]), np.concatenate([self._ts, ts])
        all_ttl = np.concatenate([self._ttl, ttl])
        # only packets whose hash repeats can be copies: a hash table finds them, and only they are sorted
        repeated = np.flatnonzero(pd.Index(all_h).duplicated(keep=False))
        order = repeated[np.lexsort((all_ts[repeated], all_h[repeated]))]
        sh, sts, sttl = all_h[order], all_ts[order], all_ttl[order]
        again = (sh[1:] == sh[:-1]) & (sts[1:] - sts[:-1] <= self.window_ns) & (sttl[1:] < sttl[:-1])
        dup = np.zeros(len(all_h), dtype=bool)
        dup[order[1:][again]] = True
        drop = dup[k:]
        recent = all_ts >= all_ts.max() - self.window_ns
        self._hash, self._ts, self._ttl = all_h[recent], all_ts[recent], all_ttl[recent]
        dropped = int(drop.sum())
        if not dropped:
            return chunk
        self.dropped += dropped
        return chunk.filter(pa.array(~drop))
