"""Compiled flow assembly: packets grouped by bidirectional key → flows with statistics.

One pass over rows sorted by (key, time). Per flow the kernel keeps integer
accumulators ``I``, floating accumulators ``F`` and TCP sequence-analysis state ``T``
(column layouts below). A flow still open at the end of a chunk is handed back as its
state rows and resumed in the next chunk, so flows spanning chunks are assembled exactly
and memory stays bounded by the number of open flows, not their packets.

The TCP analysis follows Wireshark's ``tcp_analyze_sequence_number`` (retransmission,
fast retransmission, spurious retransmission, out-of-order, duplicate ACK, zero window,
lost segment), so counts can be checked against ``tcp.analysis.*`` in tshark.
"""

from __future__ import annotations

import numba as nb
import numpy as np

SYN, FIN, RST, ACK = 0x02, 0x01, 0x04, 0x10
MASK32 = 0xFFFFFFFF

# ---- integer accumulators, per direction block (0 bidirectional, 1 src2dst, 2 dst2src)
D_FIRST, D_LAST, D_PKTS, D_BYTES, D_PAY = 0, 1, 2, 3, 4
D_FLAG0 = 5  # eight flag counters: fin syn rst psh ack urg ece cwr
D_WIDTH = 13
I_INIT_IS_A = 3 * D_WIDTH  # initiator is canonical endpoint A
I_CONN = I_INIT_IS_A + 1  # connection-state bits (B_*)
I_SYN_TS = I_CONN + 1
I_SYNACK_TS = I_SYN_TS + 1
I_HSACK_TS = I_SYNACK_TS + 1
I_RETX_S2D = I_HSACK_TS + 1
I_RETX_D2S = I_RETX_S2D + 1
I_FAST_RETX = I_RETX_D2S + 1
I_DUPACK = I_FAST_RETX + 1
I_OOO = I_DUPACK + 1
I_LOST = I_OOO + 1
I_ZEROWIN = I_LOST + 1
I_FRAGS = I_ZEROWIN + 1
I_END = I_FRAGS + 1  # END_* code
I_FIRST_ROW = I_END + 1  # row (in the chunk's row arrays) that carries the flow's key
I_GROUP_LAST = I_FIRST_ROW + 1  # 1 if no later flow of the same key exists in this chunk
I_WIDTH = I_GROUP_LAST + 1

# ---- float accumulators per direction block: Welford mean/M2 of sizes and inter-arrival (ns)
P_MIN, P_MAX, P_MEAN, P_M2, A_MIN, A_MAX, A_MEAN, A_M2 = 0, 1, 2, 3, 4, 5, 6, 7
F_DWIDTH = 8
F_WIDTH = 3 * F_DWIDTH

# ---- TCP analysis state per flow direction (0 src2dst, 1 dst2src)
T_NEXTSEQ, T_NEXTSEQ_SET, T_NEXTSEQ_TS, T_LASTACK, T_LASTACK_SET, T_LASTACK_TS = 0, 1, 2, 3, 4, 5
T_WINDOW, T_WINDOW_SET, T_DUPACKS, T_LASTFLAGS, T_ACKFLAG_SEEN = 6, 7, 8, 9, 10
T_DWIDTH = 11
T_FIRST_RTT = 2 * T_DWIDTH
T_WIDTH = T_FIRST_RTT + 1

# connection-state bits
B_ORIG_SYN, B_RESP_SYNACK, B_ORIG_FIN, B_RESP_FIN = 1, 2, 4, 8
B_ORIG_RST, B_RESP_RST, B_RESP_PKT, B_ESTAB = 16, 32, 64, 128
B_SPLIT_ACTIVE = 256

# end reasons (index into netsentry.pipeline.core.schemas.END_REASONS)
END_IDLE, END_ACTIVE, END_FIN, END_RST, END_EOF = 0, 1, 2, 3, 4

# analysis flags of one segment
TA_KEEPALIVE, TA_ZWP = 1, 2

# per-packet analysis bits (``assemble``'s ``pkt_flags`` output), as tshark's tcp.analysis.* fields
PA_RETX, PA_FAST_RETX, PA_SPURIOUS, PA_OOO, PA_DUPACK, PA_ZEROWIN, PA_LOST, PA_KEEPALIVE = 1, 2, 4, 8, 16, 32, 64, 128

_OOO_DEFAULT_NS = 3_000_000
_FAST_RETX_WINDOW_NS = 20_000_000


@nb.njit(inline="always", cache=True)
def _lt_seq(a, b):
    d = (a - b) & MASK32
    return d >= 0x80000000


@nb.njit(cache=True)
def group_rows(keys):
    """Group rows with equal key (``keys``: (n, k) uint64). Returns (gid, row_hash, n_groups).

    Group ids are numbered in order of first appearance. Open addressing over full keys,
    so a hash collision never merges two keys.
    """
    n, k = keys.shape
    h = np.empty(n, dtype=np.uint64)
    for i in range(n):
        x = np.uint64(0x9E3779B97F4A7C15)
        for j in range(k):
            x ^= keys[i, j] + np.uint64(0x9E3779B97F4A7C15) + (x << np.uint64(6)) + (x >> np.uint64(2))
            x ^= x >> np.uint64(31)
            x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(29)
        h[i] = x
    size = 1
    while size < 2 * n + 2:
        size *= 2
    mask = np.uint64(size - 1)
    table = np.full(size, -1, dtype=np.int64)
    gid_of_slot = np.empty(size, dtype=np.int64)
    gid = np.empty(n, dtype=np.int64)
    ng = 0
    for i in range(n):
        s = h[i] & mask
        while True:
            r = table[s]
            if r < 0:
                table[s] = i
                gid_of_slot[s] = ng
                gid[i] = ng
                ng += 1
                break
            same = True
            for j in range(k):
                if keys[r, j] != keys[i, j]:
                    same = False
                    break
            if same:
                gid[i] = gid_of_slot[s]
                break
            s = (s + np.uint64(1)) & mask
    return gid, h, ng


@nb.njit(cache=True)
def order_by_group(gid, ng):
    """Stable counting sort of row indices by group id (rows already in time order)."""
    n = gid.shape[0]
    counts = np.zeros(ng + 1, dtype=np.int64)
    for i in range(n):
        counts[gid[i] + 1] += 1
    for g in range(ng):
        counts[g + 1] += counts[g]
    out = np.empty(n, dtype=np.int64)
    for i in range(n):
        g = gid[i]
        out[counts[g]] = i
        counts[g] += 1
    return out


@nb.njit(cache=True)
def _start_flow(f, row, t, fl, fwd_row, I, F, T):
    for c in range(I.shape[1]):
        I[f, c] = 0
    for c in range(F.shape[1]):
        F[f, c] = 0.0
    for c in range(T.shape[1]):
        T[f, c] = 0
    # the initiator is the first packet's sender, unless that packet is a SYN-ACK
    is_synack = (fl & (SYN | ACK)) == (SYN | ACK)
    I[f, I_INIT_IS_A] = (1 - fwd_row) if is_synack else fwd_row
    I[f, I_FIRST_ROW] = row
    I[f, I_GROUP_LAST] = 1
    for d in range(3):
        I[f, d * D_WIDTH + D_FIRST] = t
        F[f, d * F_DWIDTH + P_MIN] = np.inf
        F[f, d * F_DWIDTH + A_MIN] = np.inf


@nb.njit(cache=True)
def _account(f, d, t, size, pay, fl, I, F):
    """Add one packet to direction block ``d`` (0 bidirectional, 1 src2dst, 2 dst2src)."""
    b = d * D_WIDTH
    fb = d * F_DWIDTH
    n = I[f, b + D_PKTS]
    if n == 0:
        I[f, b + D_FIRST] = t
    else:
        gap = np.float64(t - I[f, b + D_LAST])
        if gap < F[f, fb + A_MIN]:
            F[f, fb + A_MIN] = gap
        if gap > F[f, fb + A_MAX]:
            F[f, fb + A_MAX] = gap
        delta = gap - F[f, fb + A_MEAN]
        F[f, fb + A_MEAN] += delta / n
        F[f, fb + A_M2] += delta * (gap - F[f, fb + A_MEAN])
    I[f, b + D_LAST] = t
    I[f, b + D_PKTS] = n + 1
    I[f, b + D_BYTES] += size
    I[f, b + D_PAY] += pay
    s = np.float64(size)
    if s < F[f, fb + P_MIN]:
        F[f, fb + P_MIN] = s
    if s > F[f, fb + P_MAX]:
        F[f, fb + P_MAX] = s
    delta = s - F[f, fb + P_MEAN]
    F[f, fb + P_MEAN] += delta / (n + 1)
    F[f, fb + P_M2] += delta * (s - F[f, fb + P_MEAN])
    for k in range(8):
        if fl & (1 << k):
            I[f, b + D_FLAG0 + k] += 1


@nb.njit(cache=True)
def _tcp_analyze(f, d, t, seglen, fl, s, a, w, I, T):
    """Wireshark-compatible sequence analysis of one segment in flow direction ``d`` (0/1).

    Returns the segment's PA_* bits."""
    r = 1 - d
    fo = d * T_DWIDTH
    ro = r * T_DWIDTH
    sfr = fl & (SYN | FIN | RST)
    ta = 0
    pa = 0
    skip = False
    ns_set = T[f, fo + T_NEXTSEQ_SET] == 1
    nextseq = T[f, fo + T_NEXTSEQ]
    # zero-window probe
    if seglen == 1 and ns_set and s == nextseq and T[f, ro + T_WINDOW_SET] == 1 and T[f, ro + T_WINDOW] == 0:
        ta |= TA_ZWP
        skip = True
    if not skip:
        if w == 0 and sfr == 0:
            I[f, I_ZEROWIN] += 1
            pa |= PA_ZEROWIN
        if ns_set and _lt_seq(nextseq, s) and (fl & RST) == 0:
            I[f, I_LOST] += 1
            pa |= PA_LOST
        if seglen <= 1 and ns_set and s == ((nextseq - 1) & MASK32) and sfr == 0:
            ta |= TA_KEEPALIVE
            pa |= PA_KEEPALIVE
        same = (
            seglen == 0
            and T[f, fo + T_WINDOW_SET] == 1
            and w == T[f, fo + T_WINDOW]
            and ns_set
            and s == nextseq
            and T[f, fo + T_LASTACK_SET] == 1
            and a == T[f, fo + T_LASTACK]
            and sfr == 0
        )
        if same and w != 0 and (T[f, ro + T_LASTFLAGS] & TA_KEEPALIVE) != 0:
            skip = True  # keep-alive ACK
        elif same and w == 0 and (T[f, ro + T_LASTFLAGS] & TA_ZWP) != 0:
            skip = True  # zero-window-probe ACK
        elif same and w != 0:
            T[f, fo + T_DUPACKS] += 1
            I[f, I_DUPACK] += 1
            pa |= PA_DUPACK
    if T[f, fo + T_LASTACK_SET] == 0 or a != T[f, fo + T_LASTACK]:
        T[f, fo + T_DUPACKS] = 0
    # retransmission / fast retransmission / out-of-order / spurious
    if (seglen > 0 or (fl & (SYN | FIN)) != 0) and (ta & TA_KEEPALIVE) == 0:
        sna = ns_set and _lt_seq(s, nextseq)
        if seglen > 1 and ns_set and ((nextseq - 1) & MASK32) == s:
            sna = False
        end = (s + seglen) & MASK32
        if (
            sna
            and T[f, ro + T_DUPACKS] >= 2
            and T[f, ro + T_LASTACK_SET] == 1
            and T[f, ro + T_LASTACK] == s
            and t - T[f, ro + T_LASTACK_TS] < _FAST_RETX_WINDOW_NS
        ):
            I[f, I_FAST_RETX] += 1
            I[f, I_RETX_S2D + d] += 1
            pa |= PA_FAST_RETX | PA_RETX
        else:
            thr = T[f, T_FIRST_RTT] if T[f, T_FIRST_RTT] > 0 else _OOO_DEFAULT_NS
            synfin = 1 if (fl & (SYN | FIN)) != 0 else 0
            if sna and t - T[f, fo + T_NEXTSEQ_TS] < thr and nextseq != ((end + synfin) & MASK32):
                I[f, I_OOO] += 1
                pa |= PA_OOO
            elif (
                seglen > 0
                and T[f, ro + T_ACKFLAG_SEEN] == 1
                and (end == T[f, ro + T_LASTACK] or _lt_seq(end, T[f, ro + T_LASTACK]))
            ):
                I[f, I_RETX_S2D + d] += 1  # spurious retransmission (data already acked)
                pa |= PA_SPURIOUS | PA_RETX
            elif sna:
                I[f, I_RETX_S2D + d] += 1
                pa |= PA_RETX
    nxt = (s + seglen + (1 if (fl & (SYN | FIN)) != 0 else 0)) & MASK32
    if (not ns_set or _lt_seq(nextseq, nxt)) and (ta & TA_ZWP) == 0:
        T[f, fo + T_NEXTSEQ] = nxt
        T[f, fo + T_NEXTSEQ_SET] = 1
        T[f, fo + T_NEXTSEQ_TS] = t
    T[f, fo + T_WINDOW] = w
    T[f, fo + T_WINDOW_SET] = 1
    T[f, fo + T_LASTACK] = a
    T[f, fo + T_LASTACK_SET] = 1
    T[f, fo + T_LASTACK_TS] = t
    if fl & ACK:
        T[f, fo + T_ACKFLAG_SEEN] = 1
    T[f, fo + T_LASTFLAGS] = ta
    return pa


@nb.njit(cache=True)
def _handshake(f, d, t, fl, I, T):
    """Track SYN / SYN-ACK / ACK timing and connection-state bits for TCP."""
    c = I[f, I_CONN]
    if d == 0:
        if (fl & SYN) and not (fl & ACK):
            if not (c & B_ORIG_SYN):
                I[f, I_SYN_TS] = t
            c |= B_ORIG_SYN
        elif (fl & ACK) and not (fl & SYN) and (c & B_RESP_SYNACK) and I[f, I_HSACK_TS] == 0:
            I[f, I_HSACK_TS] = t
            c |= B_ESTAB
            if I[f, I_SYN_TS] > 0:
                T[f, T_FIRST_RTT] = t - I[f, I_SYN_TS]
        if fl & FIN:
            c |= B_ORIG_FIN
        if fl & RST:
            c |= B_ORIG_RST
    else:
        c |= B_RESP_PKT
        if (fl & SYN) and (fl & ACK):
            if not (c & B_RESP_SYNACK):
                I[f, I_SYNACK_TS] = t
            c |= B_RESP_SYNACK
        if fl & FIN:
            c |= B_RESP_FIN
        if fl & RST:
            c |= B_RESP_RST
    I[f, I_CONN] = c


@nb.njit(cache=True)
def _close(f, reason, I):
    c = I[f, I_CONN]
    if reason == END_ACTIVE:
        I[f, I_END] = END_ACTIVE
    elif c & (B_ORIG_RST | B_RESP_RST):
        I[f, I_END] = END_RST
    elif c & (B_ORIG_FIN | B_RESP_FIN):
        I[f, I_END] = END_FIN
    else:
        I[f, I_END] = reason


@nb.njit(cache=True)
def assemble(
    order,
    gid,
    n_state,
    ts,
    size,
    pay,
    flags,
    seq,
    ack,
    win,
    is_tcp,
    fwd,
    frag,
    state_I,
    state_F,
    state_T,
    idle_ns,
    active_ns,
    I,
    F,
    T,
    pkt_flags,
):
    """Assemble flows from rows in ``order`` (grouped by ``gid``, time-ordered within a group).

    Per-packet arrays may be of any integer type (they are widened here, not copied by the caller).
    Rows ``< n_state`` are resumed flows whose accumulators are ``state_*[row]``; the other
    rows are packets. Returns the number of flows written to ``I``/``F``/``T`` (-1 when they
    have too few rows); the last flow
    of each key is closed by :func:`finish`. ``pkt_flags[row]`` receives each packet's PA_* bits.
    """
    nf = -1
    prev_g = -1
    for j in range(order.shape[0]):
        row = order[j]
        g = gid[row]
        if row < n_state:
            nf += 1
            if nf >= I.shape[0]:
                return -1
            for c in range(I.shape[1]):
                I[nf, c] = state_I[row, c]
            for c in range(F.shape[1]):
                F[nf, c] = state_F[row, c]
            for c in range(T.shape[1]):
                T[nf, c] = state_T[row, c]
            I[nf, I_FIRST_ROW] = row
            I[nf, I_GROUP_LAST] = 1
            prev_g = g
            continue
        t = ts[row]
        fl = np.int64(flags[row]) if is_tcp[row] else 0
        new = g != prev_g
        kept_init = -1  # a timeout split continues the same conversation: its initiator stays
        if not new:
            if t - I[nf, D_LAST] > idle_ns:
                _close(nf, END_IDLE, I)
                new = True
                kept_init = I[nf, I_INIT_IS_A]
            elif t - I[nf, D_FIRST] >= active_ns:
                _close(nf, END_ACTIVE, I)
                new = True
                kept_init = I[nf, I_INIT_IS_A]
            elif (
                (fl & SYN) and not (fl & ACK) and (I[nf, I_CONN] & (B_ORIG_FIN | B_RESP_FIN | B_ORIG_RST | B_RESP_RST))
            ):
                _close(nf, END_FIN, I)
                new = True
            if new:
                I[nf, I_GROUP_LAST] = 0
        if new:
            nf += 1
            if nf >= I.shape[0]:
                return -1  # out of room: the caller retries with room for one flow per row
            _start_flow(nf, row, t, fl, np.int64(fwd[row]), I, F, T)
            if kept_init >= 0 and not (fl & SYN):  # a SYN or SYN-ACK names its own initiator
                I[nf, I_INIT_IS_A] = kept_init
            prev_g = g
        d = 0 if np.int64(fwd[row]) == I[nf, I_INIT_IS_A] else 1
        sz, py = np.int64(size[row]), np.int64(pay[row])
        _account(nf, 0, t, sz, py, fl, I, F)
        _account(nf, 1 + d, t, sz, py, fl, I, F)
        pkt_flags[row] = 0
        if frag[row] != 0:
            I[nf, I_FRAGS] += 1
        if is_tcp[row] and frag[row] != 2:
            _handshake(nf, d, t, fl, I, T)
            s, a, w = np.int64(seq[row]), np.int64(ack[row]), np.int64(win[row])
            pkt_flags[row] = _tcp_analyze(nf, d, t, py, fl, s, a, w, I, T)
        elif d == 1:
            I[nf, I_CONN] |= B_RESP_PKT
    return nf + 1


@nb.njit(cache=True)
def finish(I, nf, open_mask, reason):
    """Close the last flow of each key unless still open: ``reason`` is END_IDLE when the
    stream moved past its idle timeout, END_EOF at the end of the data."""
    for f in range(nf):
        if I[f, I_GROUP_LAST] == 1 and not open_mask[f]:
            _close(f, reason, I)


@nb.njit(cache=True)
def gather_rows(A, idx, out):
    """``out[k] = A[idx[k]]``: rows of a row-major ``A`` into a column-major ``out``, in cache-sized tiles."""
    n, w = idx.shape[0], A.shape[1]
    for k0 in range(0, n, 512):
        k1 = min(k0 + 512, n)
        for c in range(w):
            for k in range(k0, k1):
                out[k, c] = A[idx[k], c]


def conn_state_codes(conn: np.ndarray, is_tcp: np.ndarray) -> np.ndarray:
    """Zeek-like connection states (index into ``netsentry.pipeline.core.schemas.CONN_STATES``), vectorized."""
    from netsentry.pipeline.core.schemas import CONN_STATES

    idx = {s: i for i, s in enumerate(CONN_STATES)}
    c = conn.astype(np.int64)

    def has(bit: int) -> np.ndarray:
        return (c & bit) != 0

    syn, synack = has(B_ORIG_SYN), has(B_RESP_SYNACK)
    ofin, rfin, orst, rrst = has(B_ORIG_FIN), has(B_RESP_FIN), has(B_ORIG_RST), has(B_RESP_RST)
    resp = has(B_RESP_PKT)
    est = syn & synack
    tcp = np.select(
        [
            ~syn & synack & rrst,
            ~syn & synack & rfin,
            ~syn,
            est & orst,
            est & rrst,
            est & ofin & rfin,
            est & ofin,
            est & rfin,
            est,
            rrst,
            orst,
            ofin,
            ~resp,
        ],
        [idx[s] for s in ("RSTRH", "SHR", "OTH", "RSTO", "RSTR", "SF", "S2", "S3", "S1", "REJ", "RSTOS0", "SH", "S0")],
        default=idx["OTH"],
    )
    other = np.where(resp, idx["SF"], idx["S0"])
    return np.where(is_tcp, tcp, other).astype(np.int8)
