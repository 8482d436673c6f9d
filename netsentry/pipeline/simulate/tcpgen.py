"""Connections → packets, with real transport dynamics, compiled with numba.

TCP: three-way handshake (SYN retried after 1, 2, 4 s when unanswered), MSS segmentation,
slow start (initial window 10, doubling per round trip, capped by a 64 KiB receive window),
ACK clocking with delayed ACKs (every second segment), FIN or RST teardown. Loss: a segment sent
while the connection's loss window is open is dropped with probability ``loss_p``; the receiver
answers later segments with duplicate ACKs, the sender fast-retransmits after the third, or, with
fewer than three, retransmits on timeout (RTO ≥ 200 ms, doubling on each repeated loss);
``loss_p = 1`` is a black hole. Ambient loss (``ambient_loss_p``, the path's own, any time) drops
segments the same way, so lost SYNs, data, ACKs and FINs are retransmitted as above; with probability
``reorder_p`` a data segment arrives 1–3 segments late and the receiver sends a duplicate ACK. A
session's pauses: ``think_ns`` between rounds, ``idle_ns`` after every ``burst_rounds`` rounds.
UDP: datagram pairs; ICMP: echo request/reply pairs. A SYN of a connection whose outcome is a router's
refusal (net unreachable, administratively prohibited) is answered by an ICMP destination unreachable from
the client's side of the path (a packet with flags :data:`ICMP_UNREACH`, its code in the ack column, quoting
the SYN's sequence number), and the client gives up at once, as Linux aborts a connect() on it.

Each packet is emitted once with its send time, its arrival time and whether it was lost on the
way (it is then seen only by capture points before the loss); :mod:`netsentry.pipeline.simulate.observe`
places the packets at the capture points.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from netsentry.pipeline.simulate.conns import ConnTable

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
ICMP_UNREACH = 0x100
"""Flags of a router's ICMP destination unreachable answering a SYN (not a TCP flag: observe turns it into ICMP)."""
UNREACH_CODE = {7: 0, 8: 13}
"""ICMP code per refusing outcome: OUTCOME_NET_UNREACHABLE → net unreachable, OUTCOME_ADMIN_PROHIBITED → 13."""
WINDOW = 65535
MAX_UDP_PAYLOAD = 1472
SEG_GAP_NS = 12_000  # a 1500-byte frame at 1 Gb/s
HOST_NS = 20_000  # a host's reaction time (ACKs, SYN-ACK)
MIN_RTO_NS = 200_000_000
MAX_RTO_NS = 60_000_000_000
MAX_RETRIES = 7

# packet columns written by the kernel, in order
P_CONN, P_DIR, P_TSEND, P_TRECV, P_LOST, P_FLAGS, P_SEQ, P_ACK, P_LEN, P_IPID = range(10)
P_WIDTH = 10


@nb.njit(cache=True)
def _emit(P, n, c, d, t, ow, lost, flags, seq, ack, ln, ipid):
    if n >= P.shape[0]:
        return n + 1
    P[n, P_CONN] = c
    P[n, P_DIR] = d
    P[n, P_TSEND] = t
    P[n, P_TRECV] = t + ow
    P[n, P_LOST] = 1 if lost else 0
    P[n, P_FLAGS] = flags
    P[n, P_SEQ] = seq & 0xFFFFFFFF
    P[n, P_ACK] = ack & 0xFFFFFFFF
    P[n, P_LEN] = ln
    P[n, P_IPID] = ipid & 0xFFFF
    return n + 1


@nb.njit(cache=True)
def _one_way(t, ow, dfrom, dto, dns):
    return ow + (dns if dfrom <= t < dto else 0)


@nb.njit(cache=True)
def _is_lost(t, p, lfrom, lto, ap):
    """Lost to the fault window (``p`` while ``lfrom <= t < lto``) or to the path's ambient loss ``ap``."""
    if p > 0.0 and lfrom <= t < lto and np.random.random() < p:
        return True
    return ap > 0.0 and np.random.random() < ap


@nb.njit(cache=True)
def _segment(P, n, c, d, t, s, nseg, nbytes, mss, seq0, ack_other, ow, lp, lf, lt, ap, rp, df, dt, dns, ipid):
    """Send data segment ``s`` of ``nseg`` from side ``d`` at ``t``; returns (n, lost, one-way delay).

    With probability ``rp`` the segment takes a slower path and arrives 1–3 segments late (reordering)."""
    ln = mss if s < nseg - 1 else nbytes - (nseg - 1) * mss
    lost = _is_lost(t, lp, lf, lt, ap)
    o = _one_way(t, ow, df, dt, dns)
    if rp > 0.0 and np.random.random() < rp:
        o += (1 + np.random.randint(0, 3)) * SEG_GAP_NS + HOST_NS
    flags = ACK | (PSH if s == nseg - 1 else 0)
    n = _emit(P, n, c, d, t, o, lost, flags, seq0 + s * mss, ack_other, ln, ipid[d])
    ipid[d] += 1
    return n, lost, o


@nb.njit(cache=True)
def _until_delivered(P, n, c, d, t, flags, seq, ack, rto, ow, lp, lf, lt, ap, df, dt, dns, ipid):
    """Send a control segment from side ``d``, retried after the RTO (doubling) while lost.

    Returns (n, time of the delivered copy, its one-way delay, the RTO now)."""
    o = _one_way(t, ow, df, dt, dns)
    for _k in range(MAX_RETRIES):
        o = _one_way(t, ow, df, dt, dns)
        lost = _is_lost(t, lp, lf, lt, ap)
        n = _emit(P, n, c, d, t, o, lost, flags, seq, ack, 0, ipid[d])
        ipid[d] += 1
        if not lost:
            break
        t += rto
        rto *= 2
    return n, t, o, rto


@nb.njit(cache=True)
def _transfer(P, n, c, d, t0, nbytes, mss, seq0, ack_other, ow, lp, lf, lt, ap, rp, df, dt, dns, ipid, rto0):
    """Send ``nbytes`` from side ``d`` (0 client, 1 server) starting at ``t0``.

    Returns (n, time the sender saw the last ACK, time the last byte arrived, ipid pair updated).
    ``ipid`` is a 2-array of per-direction IP id counters.
    """
    r = 1 - d
    nseg = (nbytes + mss - 1) // mss
    if nseg == 0:
        return n, t0, t0
    received = np.zeros(nseg, dtype=np.bool_)
    cwnd = 10
    cap = max(2, WINDOW // mss)
    acked = 0  # segments cumulatively acknowledged
    sent = 0  # segments sent at least once
    t = t0
    last_arrival = t0
    rto = rto0
    while acked < nseg:
        w_end = min(nseg, acked + min(cwnd, cap))
        # 1) send new segments of this window back to back
        first_new = sent
        arr_t = np.empty(w_end - first_new if w_end > first_new else 1, dtype=np.int64)
        for s in range(first_new, w_end):
            ts = t + (s - first_new) * SEG_GAP_NS
            n, lost, o = _segment(
                P, n, c, d, ts, s, nseg, nbytes, mss, seq0, ack_other, ow, lp, lf, lt, ap, rp, df, dt, dns, ipid
            )
            arr_t[s - first_new] = ts + o
            if not lost:
                received[s] = True
                if ts + o > last_arrival:
                    last_arrival = ts + o
        sent = max(sent, w_end)
        # 2) the receiver acknowledges what arrived, in order of arrival
        cum = acked
        while cum < nseg and received[cum]:
            cum += 1
        t_ack_seen = t
        dups = 0
        t_third_dup = -1
        pending = 0
        run_max = t
        for s in range(first_new, w_end):
            if not received[s]:
                continue
            arr = arr_t[s - first_new]
            if s > first_new and received[s - 1] and arr_t[s - 1 - first_new] > arr:
                # overtaken: segment s arrived before s - 1, the receiver asks again for s - 1 (dup ACK)
                td = arr + HOST_NS
                o = _one_way(td, ow, df, dt, dns)
                n = _emit(P, n, c, r, td, o, _is_lost(td, lp, lf, lt, ap), ACK, ack_other, seq0 + (s - 1) * mss, 0,
                          ipid[r])  # fmt: skip
                ipid[r] += 1
            run_max = max(run_max, arr)
            ta = run_max + HOST_NS
            if s < cum:
                pending += 1
                if pending == 2 or s == cum - 1:
                    ack_val = seq0 + min((s + 1) * mss, nbytes)
                    lost = _is_lost(ta, lp, lf, lt, ap)
                    o = _one_way(ta, ow, df, dt, dns)
                    n = _emit(P, n, c, r, ta, o, lost, ACK, ack_other, ack_val, 0, ipid[r])
                    ipid[r] += 1
                    pending = 0
                    if not lost and ta + o > t_ack_seen:
                        t_ack_seen = ta + o
            else:
                # out of order after a hole: immediate duplicate ACK for the hole
                ack_val = seq0 + cum * mss
                lost = _is_lost(ta, lp, lf, lt, ap)
                o = _one_way(ta, ow, df, dt, dns)
                n = _emit(P, n, c, r, ta, o, lost, ACK, ack_other, ack_val, 0, ipid[r])
                ipid[r] += 1
                if not lost:
                    dups += 1
                    if dups == 3:
                        t_third_dup = ta + o
                    if ta + o > t_ack_seen:
                        t_ack_seen = ta + o
        if cum >= w_end:  # everything sent so far arrived: the window slides
            acked = cum
            t = t_ack_seen
            cwnd = min(cwnd * 2, 4096)
            rto = rto0
            continue
        # 3) a hole at segment ``cum``: fast retransmit after three dup ACKs, else timeout
        if t_third_dup >= 0:
            tr = t_third_dup
        else:
            tr = max(t, t_ack_seen) + rto
            rto = min(rto * 2, MAX_RTO_NS)
        cwnd = max(cwnd // 2, 2)
        # retransmit every missing segment up to what was sent (NewReno: one per partial ACK)
        fails = 0
        while cum < sent:
            n, lost, o = _segment(P, n, c, d, tr, cum, nseg, nbytes, mss, seq0, ack_other, ow, lp, lf, lt, ap, 0.0,
                                  df, dt, dns, ipid)  # fmt: skip
            if lost:
                fails += 1
                if fails > MAX_RETRIES:
                    return n, -1, -1  # the sender gives up: the connection times out
                tr = tr + rto
                rto = min(rto * 2, MAX_RTO_NS)
                continue
            fails = 0
            received[cum] = True
            if tr + o > last_arrival:
                last_arrival = tr + o
            while cum < nseg and received[cum]:
                cum += 1
            ta = tr + o + HOST_NS
            ack_val = seq0 + nbytes if cum >= nseg else seq0 + cum * mss
            lost_a = _is_lost(ta, lp, lf, lt, ap)
            o2 = _one_way(ta, ow, df, dt, dns)
            n = _emit(P, n, c, r, ta, o2, lost_a, ACK, ack_other, ack_val, 0, ipid[r])
            ipid[r] += 1
            tr = ta + o2
        acked = cum
        t = tr
    return n, t, last_arrival


@nb.njit(cache=True)
def _pause(k, think, burst, idle):
    """Client pause after round ``k``: ``idle`` after every ``burst`` rounds (idle gaps), else ``think``."""
    if burst > 0 and (k + 1) % burst == 0:
        return idle
    return think


@nb.njit(cache=True)
def generate(start, proto, rtt, mss, rounds, req, resp, think, server, outcome, retries,
             lp, lf, lt, dns_, df, dt, amb, reo, burst, idle, seed, P):  # fmt: skip
    """Emit every connection's packets into ``P`` (rows × P_WIDTH); return the row count
    (larger than ``P`` when it was too small: call again with room for that many)."""
    n = 0
    for c in range(start.shape[0]):
        np.random.seed((seed * 1_000_003 + c) & 0x7FFFFFFF)
        ipid = np.empty(2, dtype=np.int64)
        ipid[0] = np.random.randint(0, 65536)
        ipid[1] = np.random.randint(0, 65536)
        ow = rtt[c] // 2
        t = start[c]
        lpc, lfc, ltc, apc, rpc = lp[c], lf[c], lt[c], amb[c], reo[c]
        dfc, dtc, dnc = df[c], dt[c], dns_[c]
        if proto[c] != 6:
            size_q = min(req[c], MAX_UDP_PAYLOAD)
            size_r = min(resp[c], MAX_UDP_PAYLOAD)
            for k in range(rounds[c]):
                lost = _is_lost(t, lpc, lfc, ltc, apc)
                o = _one_way(t, ow, dfc, dtc, dnc)
                n = _emit(P, n, c, 0, t, o, lost, 0, k, 0, size_q, ipid[0])
                ipid[0] += 1
                if not lost and resp[c] > 0:
                    ts = t + o + server[c]
                    lost2 = _is_lost(ts, lpc, lfc, ltc, apc)
                    o2 = _one_way(ts, ow, dfc, dtc, dnc)
                    n = _emit(P, n, c, 1, ts, o2, lost2, 0, k, 0, size_r, ipid[1])
                    ipid[1] += 1
                t += max(_pause(k, think[c], burst[c], idle[c]), 1)
            continue
        isn_c = np.random.randint(0, 1 << 31) * 2 + np.random.randint(0, 2)
        isn_s = np.random.randint(0, 1 << 31) * 2 + np.random.randint(0, 2)
        oc = outcome[c]
        # ---- handshake: SYN (retried), answered unless lost or unanswered by design
        established = False
        t_syn_arrive = -1
        wait = 1_000_000_000
        for k in range(retries[c] + 1):
            lost = _is_lost(t, lpc, lfc, ltc, apc)
            o = _one_way(t, ow, dfc, dtc, dnc)
            n = _emit(P, n, c, 0, t, o, lost, SYN, isn_c, 0, 0, ipid[0])
            ipid[0] += 1
            if oc == 7 or oc == 8:  # the router answers near the client; connect() fails
                ts = t + HOST_NS
                n = _emit(P, n, c, 1, ts, max(o // 5, HOST_NS), False, ICMP_UNREACH, isn_c, 0 if oc == 7 else 13, 0, 0)
                break
            if not lost and oc != 4:
                ts = t + o + HOST_NS
                if oc == 3:  # closed port: RST-ACK
                    lost2 = _is_lost(ts, lpc, lfc, ltc, apc)
                    n = _emit(P, n, c, 1, ts, _one_way(ts, ow, dfc, dtc, dnc), lost2, RST | ACK, 0, isn_c + 1, 0,
                              ipid[1])  # fmt: skip
                    ipid[1] += 1
                    if not lost2:
                        break
                else:
                    lost2 = _is_lost(ts, lpc, lfc, ltc, apc)
                    o2 = _one_way(ts, ow, dfc, dtc, dnc)
                    n = _emit(P, n, c, 1, ts, o2, lost2, SYN | ACK, isn_s, isn_c + 1, 0, ipid[1])
                    ipid[1] += 1
                    if not lost2:
                        t_syn_arrive = ts + o2
                        established = True
                        break
            if k < retries[c]:
                t += wait
                wait *= 2
        if not established:
            continue
        t = t_syn_arrive + HOST_NS
        if oc == 5:  # half-open scan: the client resets
            n = _emit(P, n, c, 0, t, _one_way(t, ow, dfc, dtc, dnc), _is_lost(t, lpc, lfc, ltc, apc), RST, isn_c + 1,
                      0, 0, ipid[0])  # fmt: skip
            continue
        n = _emit(P, n, c, 0, t, _one_way(t, ow, dfc, dtc, dnc), _is_lost(t, lpc, lfc, ltc, apc), ACK,
                  isn_c + 1, isn_s + 1, 0, ipid[0])  # fmt: skip
        ipid[0] += 1
        cseq = isn_c + 1
        sseq = isn_s + 1
        rto0 = max(MIN_RTO_NS, 3 * rtt[c])
        t_c = t
        for _k in range(rounds[c]):
            n, t_c, t_arr = _transfer(P, n, c, 0, t, req[c], np.int64(mss[c]), cseq, sseq, ow, lpc, lfc, ltc, apc,
                                      rpc, dfc, dtc, dnc, ipid, rto0)  # fmt: skip
            if t_c < 0:
                break
            cseq += req[c]
            t_s = t_arr + max(server[c], 2 * HOST_NS)  # after the receiver's ACK
            if resp[c] > 0:
                n, t_s_done, t_arr2 = _transfer(P, n, c, 1, t_s, resp[c], np.int64(mss[c]), sseq, cseq, ow, lpc,
                                                lfc, ltc, apc, rpc, dfc, dtc, dnc, ipid, rto0)  # fmt: skip
                if t_s_done < 0:
                    t_c = -1
                    break
                sseq += resp[c]
                t = max(t_c, t_arr2 + 2 * HOST_NS) + _pause(_k, think[c], burst[c], idle[c])  # client ACKed first
            else:
                t = max(t_c, t_arr + 2 * HOST_NS) + _pause(_k, think[c], burst[c], idle[c])
        if oc == 6 or t_c < 0:  # still open, or timed out
            continue
        if oc == 1:  # server aborts
            n = _emit(P, n, c, 1, t, _one_way(t, ow, dfc, dtc, dnc), _is_lost(t, lpc, lfc, ltc, apc), RST | ACK,
                      sseq, cseq, 0, ipid[1])  # fmt: skip
            continue
        if oc == 2:  # client aborts
            n = _emit(P, n, c, 0, t, _one_way(t, ow, dfc, dtc, dnc), _is_lost(t, lpc, lfc, ltc, apc), RST | ACK,
                      cseq, sseq, 0, ipid[0])  # fmt: skip
            continue
        # orderly close: client FIN, server FIN-ACK, client ACK (a lost FIN is retried after the RTO)
        n, t, o, rto = _until_delivered(P, n, c, 0, t, FIN | ACK, cseq, sseq, rto0, ow, lpc, lfc, ltc, apc, dfc, dtc,
                                        dnc, ipid)  # fmt: skip
        ts = t + o + HOST_NS
        n, ts, o2, rto = _until_delivered(P, n, c, 1, ts, FIN | ACK, sseq, cseq + 1, rto, ow, lpc, lfc, ltc, apc, dfc,
                                          dtc, dnc, ipid)  # fmt: skip
        tc = ts + o2 + HOST_NS
        n = _emit(P, n, c, 0, tc, _one_way(tc, ow, dfc, dtc, dnc), False, ACK, cseq + 1, sseq + 1, 0, ipid[0])
        ipid[0] += 1
    return n


def estimate_rows(conns: ConnTable) -> int:
    """An upper-bound guess of the packets ``conns`` make (the kernel reports when it is short)."""
    mss = np.maximum(conns["mss"].astype(np.int64), 1)
    segs = (conns["req_bytes"] + mss - 1) // mss + (conns["resp_bytes"] + mss - 1) // mss
    per = np.where(conns["proto"] == 6, 2 * segs * conns["rounds"] + 12 + 4 * conns["rounds"], 2 * conns["rounds"])
    return int(per.sum() * 1.3) + 1024


def generate_packets(conns: ConnTable, seed: int) -> np.ndarray:
    """All packets of ``conns`` as a (rows, P_WIDTH) int64 array, in connection order."""
    c = conns.cols
    args = (
        c["start_ns"], c["proto"], c["rtt_ns"], c["mss"], c["rounds"], c["req_bytes"], c["resp_bytes"],
        c["think_ns"], c["server_ns"], c["outcome"], c["syn_retries"], c["loss_p"].astype(np.float64),
        c["loss_from_ns"], c["loss_to_ns"], c["delay_ns"], c["delay_from_ns"], c["delay_to_ns"],
        c["ambient_loss_p"].astype(np.float64), c["reorder_p"].astype(np.float64), c["burst_rounds"], c["idle_ns"],
        np.int64(seed),
    )  # fmt: skip
    rows = estimate_rows(conns)
    while True:
        P = np.empty((rows, P_WIDTH), dtype=np.int64)
        n = generate(*args, P)
        if n <= rows:
            return P[:n]
        rows = n
