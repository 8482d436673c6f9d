"""The connection table: what every behaviour generator (benign, compromise, fault) produces.

A behaviour describes *connections* (columnar, numpy), not packets; :mod:`tcpgen` turns them
into packets with real TCP dynamics. Columns (one row per connection):

=================  ======  ==============================================================
start_ns           int64   time the client sends its first packet (epoch ns)
proto              uint8   6 TCP, 17 UDP, 1 ICMP (echo)
client, server     uint32  IPv4 addresses (host order); ``client`` initiates
cport, sport       uint16  client / server ports
vni                uint32  overlay id of the client's VPC (0: no overlay / external)
client_vm          int32   index of the client VM in the cloud (-1: an internet host)
server_vm          int32   index of the server VM (-1: an internet host)
rtt_ns             int64   round-trip time between the two ends
mss                uint16  TCP maximum segment size (payload bytes per segment)
rounds             int32   request/response exchanges (TCP) or datagrams pairs (UDP)
req_bytes          int64   bytes the client sends per round (UDP: per datagram)
resp_bytes         int64   bytes the server answers per round (0: no answer)
think_ns           int64   pause between rounds (client side)
server_ns          int64   server processing time before answering
outcome            uint8   OUTCOME_*: how the TCP connection goes
syn_retries        uint8   SYN retransmissions when unanswered (0 for floods)
app                uint8   APP_*: payload template (what a dissector will see)
loss_p             float32 probability a segment is lost while ``loss_from_ns <= t < loss_to_ns``
loss_from_ns/to    int64   loss window (a fault), on the path between the two ends
delay_ns           int64   extra one-way delay while ``delay_from_ns <= t < delay_to_ns``
delay_from/to_ns   int64   latency-spike window
ambient_loss_p     float32 the path's ambient loss probability per packet (any time; not a fault)
reorder_p          float32 probability a data segment arrives 1–3 segments late (reordering)
burst_rounds       int32   rounds per burst (0: no bursts): the pause after every burst is ``idle_ns``
idle_ns            int64   idle gap between bursts of rounds (long-lived sessions)
=================  ======  ==============================================================
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# How a TCP connection goes.
OUTCOME_FIN = 0  # handshake, rounds, FIN both ways
OUTCOME_RST_SERVER = 1  # handshake, rounds, the server aborts with RST
OUTCOME_RST_CLIENT = 2  # handshake, rounds, the client aborts with RST
OUTCOME_REJECT = 3  # SYN answered by RST-ACK (closed port)
OUTCOME_NO_ANSWER = 4  # SYN never answered (filtered port, black hole, spoofed flood)
OUTCOME_OPEN_RST = 5  # SYN, SYN-ACK, client RST (half-open scan of an open port)
OUTCOME_OPEN = 6  # handshake and rounds, still open at the end (long-lived)
OUTCOME_NET_UNREACHABLE = 7  # SYN answered by the client's router: ICMP net unreachable (a route withdrawn)
OUTCOME_ADMIN_PROHIBITED = 8  # SYN answered by the client's router: ICMP administratively prohibited (a filter)

# Payload templates (first bytes a dissector sees; the rest is filler that parses cleanly).
APP_NONE = 0  # opaque bytes (port chosen so no dissector objects)
APP_HTTP = 1
APP_TLS = 2
APP_SSH = 3
APP_DNS = 4
APP_SQL = 5
APP_FTP = 6
APP_STRATUM = 7  # crypto-mining pool (JSON-RPC lines)

COLUMNS: dict[str, type] = {
    "start_ns": np.int64,
    "proto": np.uint8,
    "client": np.uint32,
    "server": np.uint32,
    "cport": np.uint16,
    "sport": np.uint16,
    "vni": np.uint32,
    "client_vm": np.int32,
    "server_vm": np.int32,
    "rtt_ns": np.int64,
    "mss": np.uint16,
    "rounds": np.int32,
    "req_bytes": np.int64,
    "resp_bytes": np.int64,
    "think_ns": np.int64,
    "server_ns": np.int64,
    "outcome": np.uint8,
    "syn_retries": np.uint8,
    "app": np.uint8,
    "loss_p": np.float32,
    "loss_from_ns": np.int64,
    "loss_to_ns": np.int64,
    "delay_ns": np.int64,
    "delay_from_ns": np.int64,
    "delay_to_ns": np.int64,
    "ambient_loss_p": np.float32,
    "reorder_p": np.float32,
    "burst_rounds": np.int32,
    "idle_ns": np.int64,
}

DEFAULTS: dict[str, float | int] = {
    "proto": 6,
    "vni": 0,
    "client_vm": -1,
    "server_vm": -1,
    "rtt_ns": 1_000_000,
    "mss": 1448,
    "rounds": 1,
    "req_bytes": 300,
    "resp_bytes": 2000,
    "think_ns": 0,
    "server_ns": 200_000,
    "outcome": OUTCOME_FIN,
    "syn_retries": 2,
    "app": APP_NONE,
    "loss_p": 0.0,
    "loss_from_ns": 0,
    "loss_to_ns": 0,
    "delay_ns": 0,
    "delay_from_ns": 0,
    "delay_to_ns": 0,
    "ambient_loss_p": 0.0,
    "reorder_p": 0.0,
    "burst_rounds": 0,
    "idle_ns": 0,
}


@dataclass
class ConnTable:
    """Columns of connections; build with :meth:`make` and :func:`concat`."""

    cols: dict[str, np.ndarray] = field(default_factory=lambda: {k: np.zeros(0, t) for k, t in COLUMNS.items()})

    def __len__(self) -> int:
        return len(self.cols["start_ns"])

    def __getitem__(self, name: str) -> np.ndarray:
        return self.cols[name]

    @classmethod
    def make(cls, n: int, **values: object) -> ConnTable:
        """``n`` connections; each column from ``values`` (scalar or length-``n`` array) or its default.

        ``start_ns``, ``client``, ``server``, ``cport`` and ``sport`` are required.
        """
        unknown = set(values) - set(COLUMNS)
        if unknown:
            raise KeyError(f"unknown connection column(s): {', '.join(sorted(unknown))}")
        cols = {}
        for name, dtype in COLUMNS.items():
            if name in values:
                v = values[name]
            elif name in DEFAULTS:
                v = DEFAULTS[name]
            else:
                raise KeyError(f"connection column {name!r} is required")
            arr = np.broadcast_to(np.asarray(v), (n,)).astype(dtype)
            cols[name] = arr.copy()
        return cls(cols)

    def select(self, mask: np.ndarray) -> ConnTable:
        return ConnTable({k: v[mask] for k, v in self.cols.items()})


def concat(tables: list[ConnTable]) -> ConnTable:
    """One table of all connections, ordered by start time (stable)."""
    tables = [t for t in tables if len(t)]
    if not tables:
        return ConnTable()
    cols = {k: np.concatenate([t.cols[k] for t in tables]) for k in COLUMNS}
    order = np.argsort(cols["start_ns"], kind="stable")
    return ConnTable({k: v[order] for k, v in cols.items()})
