"""Table contracts between stages: the single source of column names and types.

IP addresses are stored compactly as 16-byte binaries (IPv4 as IPv4-mapped IPv6,
``::ffff:a.b.c.d``) and rendered as text only for people (:func:`ip_text`).
"""

from __future__ import annotations

import ipaddress

import numpy as np
import pyarrow as pa

from netsentry.pipeline.core.errors import SchemaError

IP16 = pa.binary(16)
TENANT_TYPE = pa.dictionary(pa.int32(), pa.string())
CODE_TYPE = pa.dictionary(pa.int8(), pa.string())

PACKETS = pa.schema(
    [
        pa.field("ts_ns", pa.int64(), nullable=False),
        pa.field("capture_point", TENANT_TYPE, nullable=False),
        pa.field("frame_len", pa.uint32(), nullable=False),
        pa.field("cap_len", pa.uint32(), nullable=False),
        pa.field("vni", pa.uint32(), nullable=False),
        pa.field("vlan", pa.uint16(), nullable=False),
        pa.field("ip_version", pa.uint8(), nullable=False),
        pa.field("src_ip", IP16, nullable=False),
        pa.field("dst_ip", IP16, nullable=False),
        pa.field("proto", pa.uint8(), nullable=False),
        pa.field("src_port", pa.uint16(), nullable=False),
        pa.field("dst_port", pa.uint16(), nullable=False),
        pa.field("ip_len", pa.uint32(), nullable=False),
        pa.field("payload_len", pa.uint32(), nullable=False),
        pa.field("ttl", pa.uint8(), nullable=False),
        pa.field("ip_id", pa.uint32(), nullable=False),
        pa.field("frag", pa.uint8(), nullable=False),
        pa.field("tcp_flags", pa.uint16(), nullable=False),
        pa.field("tcp_seq", pa.uint32(), nullable=False),
        pa.field("tcp_ack", pa.uint32(), nullable=False),
        pa.field("tcp_win", pa.uint16(), nullable=False),
        pa.field("icmp_type", pa.uint8(), nullable=False),
        pa.field("icmp_code", pa.uint8(), nullable=False),
        pa.field("pkt_hash", pa.uint64(), nullable=False),
        pa.field("tenant", TENANT_TYPE, nullable=False),
        pa.field("vm", TENANT_TYPE, nullable=False),
    ]
)
"""One row per IP packet; no payload bytes. ``frag``: 0 not a fragment, 1 first, 2 later fragment."""

MAC = pa.uint64()
"""A 48-bit MAC address as an unsigned integer, first octet most significant (``00:0c:29:20:a8:7f`` →
``0x000C2920A87F``): compact, and grouped or compared like any integer column. :func:`mac_text` renders it."""

ARP = pa.schema(
    [
        pa.field("ts_ns", pa.int64(), nullable=False),
        pa.field("capture_point", TENANT_TYPE, nullable=False),
        pa.field("vni", pa.uint32(), nullable=False),
        pa.field("vlan", pa.uint16(), nullable=False),
        pa.field("op", pa.uint16(), nullable=False),
        pa.field("src_mac", MAC, nullable=False),
        pa.field("dst_mac", MAC, nullable=False),
        pa.field("sender_mac", MAC, nullable=False),
        pa.field("sender_ip", IP16, nullable=False),
        pa.field("target_mac", MAC, nullable=False),
        pa.field("target_ip", IP16, nullable=False),
        pa.field("gratuitous", pa.bool_(), nullable=False),
    ]
)
"""One row per ARP frame for Ethernet/IPv4 (hardware type 1, protocol 0x0800, address sizes 6 and 4); no other
byte of the frame. ``op`` 1 request, 2 reply, any other value as sent. ``src_mac``/``dst_mac`` are the frame's
link-layer addresses (a Linux cooked capture keeps only the source: ``dst_mac`` 0 there), ``sender_*``/``target_*``
the ARP fields; MACs as :data:`MAC`, addresses IPv4-mapped like :data:`PACKETS`. ``vlan`` the outermost tag,
``vni`` the VXLAN/Geneve network of a decapsulated frame (else 0). ``gratuitous``: sender IP = target IP (an
announcement or a claim of that address)."""

ARP_REQUEST, ARP_REPLY = 1, 2

MESSAGE_KEYS = [
    pa.field("ts_ns", pa.int64(), nullable=False),
    pa.field("capture_point", TENANT_TYPE, nullable=False),
    pa.field("vni", pa.uint32(), nullable=False),
    pa.field("ip_version", pa.uint8(), nullable=False),
    pa.field("src_ip", IP16, nullable=False),
    pa.field("dst_ip", IP16, nullable=False),
    pa.field("src_port", pa.uint16(), nullable=False),
    pa.field("dst_port", pa.uint16(), nullable=False),
]
"""Where and between whom a message was seen: the first columns of the per-message tables (dns, stratum)."""

DNS = pa.schema(
    [
        *MESSAGE_KEYS,
        pa.field("protocol", pa.uint8(), nullable=False),
        pa.field("is_response", pa.bool_(), nullable=False),
        pa.field("opcode", pa.uint8(), nullable=False),
        pa.field("rcode", pa.uint8(), nullable=False),
        pa.field("qdcount", pa.uint16(), nullable=False),
        pa.field("ancount", pa.uint16(), nullable=False),
        pa.field("qtype", pa.uint16(), nullable=False),
        pa.field("name_len", pa.uint16(), nullable=False),
        pa.field("name_len_estimated", pa.bool_(), nullable=False),
        pa.field("labels", pa.uint8(), nullable=False),
        pa.field("max_label_len", pa.uint8(), nullable=False),
        pa.field("label_entropy", pa.float32(), nullable=False),
        pa.field("domain_hash", pa.uint64(), nullable=False),
        pa.field("name_hash", pa.uint64(), nullable=False),
    ]
)
"""One row per DNS message on UDP/TCP port 53 (both directions), derived numbers only: the header's ``is_response``,
``opcode``, ``rcode``, ``qdcount``, ``ancount`` and the first question's ``qtype`` (0 when not captured),
``name_len`` (dotted characters; estimated from the UDP/IP length when the snap length cut the name:
``name_len_estimated``), ``labels``, ``max_label_len``, ``label_entropy`` (Shannon bits per character over the
captured name characters), ``domain_hash`` (64-bit hash of the registered domain, the last two labels, lower-cased;
0 when not captured whole) and ``name_hash`` (of the captured name): pseudonyms, no name leaves capture."""

DNS_NXDOMAIN = 3

STRATUM = pa.schema(
    [
        *MESSAGE_KEYS,
        pa.field("method", pa.uint8(), nullable=False),
    ]
)
"""One row per TCP segment whose payload opens with a JSON-RPC object of a crypto-mining protocol (Stratum v1,
the CryptoNote/XMRig stratum, Ethereum stratum/getwork), both directions; only the message's kind leaves capture,
as ``method``: one of :data:`STRATUM_METHODS`."""

STRATUM_SUBSCRIBE, STRATUM_AUTHORIZE, STRATUM_JOB, STRATUM_SUBMIT = 1, 2, 3, 4
STRATUM_DIFFICULTY, STRATUM_GETWORK, STRATUM_OTHER = 5, 6, 7
STRATUM_METHODS = {
    STRATUM_SUBSCRIBE: "subscribe (mining.subscribe, mining.extranonce.subscribe)",
    STRATUM_AUTHORIZE: "authorize or login (mining.authorize, CryptoNote login, eth_submitLogin)",
    STRATUM_JOB: "pool to miner work (mining.notify, CryptoNote job)",
    STRATUM_SUBMIT: "a share (mining.submit, CryptoNote submit)",
    STRATUM_DIFFICULTY: "difficulty or target (mining.set_difficulty, mining.suggest_difficulty, mining.set_target, "
    "mining.suggest_target)",
    STRATUM_GETWORK: "Ethereum getwork (eth_getWork, eth_submitWork, eth_submitHashrate)",
    STRATUM_OTHER: "any other mining.* method (mining.configure, mining.set_extranonce, ...), CryptoNote keepalived",
}
"""``method`` codes of the stratum table (0 is never stored: a segment with no mining method gives no row)."""

# TCP flag bits as in the TCP header (``tcp_flags``).
FIN, SYN, RST, PSH, ACK, URG, ECE, CWR = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80
FLAG_NAMES = ("fin", "syn", "rst", "psh", "ack", "urg", "ece", "cwr")

DIRECTIONS = ("bidirectional", "src2dst", "dst2src")
CONN_STATES = ("S0", "S1", "SF", "REJ", "S2", "S3", "RSTO", "RSTR", "RSTOS0", "RSTRH", "SH", "SHR", "OTH")
END_REASONS = ("idle", "active", "fin", "rst", "eof")


def _flow_fields() -> list[pa.Field]:
    f = [
        pa.field("flow_id", pa.uint64(), nullable=False),
        pa.field("capture_point", TENANT_TYPE, nullable=False),
        pa.field("vni", pa.uint32(), nullable=False),
        pa.field("vlan", pa.uint16(), nullable=False),
        pa.field("ip_version", pa.uint8(), nullable=False),
        pa.field("src_ip", IP16, nullable=False),
        pa.field("dst_ip", IP16, nullable=False),
        pa.field("src_port", pa.uint16(), nullable=False),
        pa.field("dst_port", pa.uint16(), nullable=False),
        pa.field("protocol", pa.uint8(), nullable=False),
        pa.field("tenant", TENANT_TYPE, nullable=False),
        pa.field("vm", TENANT_TYPE, nullable=False),
        pa.field("src_tenant", TENANT_TYPE, nullable=False),
        pa.field("src_vm", TENANT_TYPE, nullable=False),
        pa.field("dst_tenant", TENANT_TYPE, nullable=False),
        pa.field("dst_vm", TENANT_TYPE, nullable=False),
        pa.field("first_seen_ns", pa.int64(), nullable=False),
        pa.field("last_seen_ns", pa.int64(), nullable=False),
    ]
    for d in DIRECTIONS:
        f += [
            pa.field(f"{d}_first_seen_ms", pa.int64(), nullable=False),
            pa.field(f"{d}_last_seen_ms", pa.int64(), nullable=False),
            pa.field(f"{d}_duration_ms", pa.float64(), nullable=False),
            pa.field(f"{d}_packets", pa.int64(), nullable=False),
            pa.field(f"{d}_bytes", pa.int64(), nullable=False),
            pa.field(f"{d}_payload_bytes", pa.int64(), nullable=False),
            pa.field(f"{d}_min_ps", pa.float64(), nullable=False),
            pa.field(f"{d}_mean_ps", pa.float64(), nullable=False),
            pa.field(f"{d}_stddev_ps", pa.float64(), nullable=False),
            pa.field(f"{d}_max_ps", pa.float64(), nullable=False),
            pa.field(f"{d}_min_piat_ms", pa.float64(), nullable=False),
            pa.field(f"{d}_mean_piat_ms", pa.float64(), nullable=False),
            pa.field(f"{d}_stddev_piat_ms", pa.float64(), nullable=False),
            pa.field(f"{d}_max_piat_ms", pa.float64(), nullable=False),
        ]
    for d in DIRECTIONS:
        f += [pa.field(f"{d}_{n}_packets", pa.int64(), nullable=False) for n in FLAG_NAMES]
    f += [
        pa.field("conn_state", CODE_TYPE, nullable=False),
        pa.field("syn_synack_ms", pa.float64()),
        pa.field("handshake_rtt_ms", pa.float64()),
        pa.field("src2dst_retransmissions", pa.int64(), nullable=False),
        pa.field("dst2src_retransmissions", pa.int64(), nullable=False),
        pa.field("retransmissions", pa.int64(), nullable=False),
        pa.field("fast_retransmissions", pa.int64(), nullable=False),
        pa.field("dup_acks", pa.int64(), nullable=False),
        pa.field("out_of_order", pa.int64(), nullable=False),
        pa.field("lost_segments", pa.int64(), nullable=False),
        pa.field("zero_windows", pa.int64(), nullable=False),
        pa.field("fragments", pa.int64(), nullable=False),
        pa.field("end_reason", CODE_TYPE, nullable=False),
    ]
    return f


FLOWS = pa.schema(_flow_fields())
"""One row per bidirectional flow; ``src`` is the initiator. Names follow NFStream (direction, stat, unit).

``tenant``/``vm`` own the flow: the initiator's when it is inside a tenant, else the responder's.
Sizes (``*_ps``) and ``*_bytes`` count captured frames' wire length, as tshark's conversation
table does; ``*_payload_bytes`` count transport payload; ``*_piat_ms`` are inter-arrival times.
"""


TCP_ANALYSIS_BITS = {
    "retransmission": 1,
    "fast_retransmission": 2,
    "spurious_retransmission": 4,
    "out_of_order": 8,
    "duplicate_ack": 16,
    "zero_window": 32,
    "lost_segment": 64,
    "keep_alive": 128,
}
"""Bits of ``tcp_events.analysis``, each as tshark's ``tcp.analysis.<name>`` (``flow_kernel.PA_*``).
A fast or spurious retransmission also carries the ``retransmission`` bit, as in tshark."""

TCP_EVENTS = pa.schema(
    [
        PACKETS.field(name)
        for name in (
            "ts_ns",
            "capture_point",
            "vni",
            "src_ip",
            "dst_ip",
            "src_port",
            "dst_port",
            "tcp_flags",
            "payload_len",
        )
    ]
    + [pa.field("analysis", pa.int16(), nullable=False)]
)
"""One row per TCP packet with at least one analysis bit (:data:`TCP_ANALYSIS_BITS`), written by the
flows stage beside the flows: a sparse, per-packet record of retransmissions, dup-ACKs, zero windows …
Addresses, ports, flags and lengths are the packet's own (as in :data:`PACKETS`); rows of one capture
point are in time order."""


def check_columns(table: pa.Table, schema: pa.Schema, what: str) -> None:
    """Raise :class:`SchemaError` naming the first column missing from ``table``."""
    missing = [n for n in schema.names if n not in table.column_names]
    if missing:
        raise SchemaError(f"{what} table lacks column(s) {', '.join(missing[:5])}; expected the {what} contract")


def ip16_from_text(addrs: list[str] | np.ndarray) -> np.ndarray:
    """Text addresses (IPv4 or IPv6) → ``(n, 16)`` uint8 array in the stored form."""
    out = np.zeros((len(addrs), 16), dtype=np.uint8)
    for i, a in enumerate(addrs):
        ip = ipaddress.ip_address(a)
        if ip.version == 4:
            out[i, 10:12] = 0xFF
            out[i, 12:] = np.frombuffer(ip.packed, dtype=np.uint8)
        else:
            out[i] = np.frombuffer(ip.packed, dtype=np.uint8)
    return out


def message_table(cols: dict[str, np.ndarray], capture_point: str, schema: pa.Schema) -> pa.Table:
    """Per-message columns of one capture point's batch → a table in ``schema`` (a :data:`MESSAGE_KEYS` table):
    addresses as :data:`IP16`, ``protocol`` from the packets' ``proto``, booleans from 0/1."""
    n = len(cols["ts_ns"])
    arrays: list[pa.Array] = []
    for fld in schema:
        name = fld.name
        if name == "capture_point":
            arrays.append(pa.DictionaryArray.from_arrays(np.zeros(n, np.int32), pa.array([capture_point])))
        elif name in ("src_ip", "dst_ip"):
            arrays.append(ip16_array(cols[name]))
        elif name == "protocol":
            arrays.append(pa.array(cols["proto"], type=fld.type))
        elif fld.type == pa.bool_():
            arrays.append(pa.array(cols[name].astype(bool)))
        else:
            arrays.append(pa.array(cols[name], type=fld.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def ip16_array(raw: np.ndarray) -> pa.FixedSizeBinaryArray:
    """``(n, 16)`` uint8 → Arrow ``binary(16)`` array without copying."""
    raw = np.ascontiguousarray(raw, dtype=np.uint8)
    return pa.FixedSizeBinaryArray.from_buffers(IP16, len(raw), [None, pa.py_buffer(raw)])


def ip16_numpy(col: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Arrow ``binary(16)`` column → ``(n, 16)`` uint8 array."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    buf = col.buffers()[1]
    arr = np.frombuffer(buf, dtype=np.uint8, count=16 * (len(col) + col.offset))
    return arr.reshape(-1, 16)[col.offset :]


def mac_text(values: pa.Array | pa.ChunkedArray | np.ndarray) -> np.ndarray:
    """Render :data:`MAC` values as ``aa:bb:cc:dd:ee:ff`` text (object array)."""
    raw = np.asarray(values.to_numpy() if isinstance(values, pa.ChunkedArray | pa.Array) else values, np.uint64)
    octets = raw.astype(">u8").view(np.uint8).reshape(-1, 8)[:, 2:]
    return np.array([":".join(f"{o:02x}" for o in row) for row in octets.tolist()], dtype=object)


def mac_from_text(text: str) -> int:
    """``aa:bb:cc:dd:ee:ff`` (or with ``-``) → the :data:`MAC` integer; a clear error naming the value."""
    digits = text.replace(":", "").replace("-", "")
    if len(digits) != 12:
        raise SchemaError(f"MAC address {text!r} is not six octets")
    try:
        return int(digits, 16)
    except ValueError:
        raise SchemaError(f"MAC address {text!r} is not hexadecimal") from None


def _one_ip_text(b: bytes) -> str:
    if b[:12] == b"\x00" * 10 + b"\xff\xff":
        return str(ipaddress.IPv4Address(b[12:]))
    return str(ipaddress.IPv6Address(b))


def ip_text(col: pa.Array | pa.ChunkedArray | np.ndarray) -> np.ndarray:
    """Render stored addresses as text (object array), converting each distinct value once."""
    raw = col if isinstance(col, np.ndarray) else ip16_numpy(col)
    if len(raw) == 0:
        return np.array([], dtype=object)
    view = np.ascontiguousarray(raw).view("S16").ravel()
    uniq, inverse = np.unique(view, return_inverse=True)
    # numpy 'S' strips trailing NULs: pad back to 16 bytes before decoding.
    text = np.array([_one_ip_text(u.ljust(16, b"\x00")) for u in uniq], dtype=object)
    return text[inverse]
