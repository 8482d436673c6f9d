"""Simulator speed: the 10-minute, 50-VM scenario (configs/scenarios/scale50.yaml) and the
``mixed`` scenario, against building the same kind of packets with scapy (the usual tool).

Run: ``python -m bench.simulate`` (writes into bench/out/, deleted afterwards unless --keep).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

from netsentry.pipeline.simulate.scenario import load_scenario
from netsentry.pipeline.simulate.stage import simulate, write_outputs

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"


def _run(scenario: str, snaplen: int, out: Path) -> dict[str, float]:
    sc = load_scenario(ROOT / "configs" / "scenarios" / f"{scenario}.yaml")
    t0 = time.perf_counter()
    res = simulate(sc)
    t1 = time.perf_counter()
    counts = write_outputs(res, out, snaplen=snaplen)
    t2 = time.perf_counter()
    size = sum(p.stat().st_size for p in out.glob("*.pcap"))
    packets = sum(counts.values())
    return {
        "scenario": scenario,
        "snaplen": snaplen,
        "vms": len(res.cloud),
        "duration_s": sc.duration_s,
        "connections": len(res.conns),
        "packets": packets,
        "bytes": size,
        "generate_s": t1 - t0,
        "write_s": t2 - t1,
        "total_s": t2 - t0,
        "packets_per_s": packets / (t2 - t0),
    }


def _scapy_rate(n: int, out: Path) -> float | None:
    """Packets/s for scapy building and writing TCP packets one by one (the peer)."""
    try:
        from scapy.all import IP, TCP, Ether, Raw, wrpcap
    except ImportError:
        return None
    t0 = time.perf_counter()
    pkts = [
        Ether()
        / IP(src="10.0.0.1", dst="10.0.0.2", id=i & 0xFFFF)
        / TCP(sport=40000, dport=443, seq=i * 1448, flags="A")
        / Raw(b"\x17" * 700)
        for i in range(n)
    ]
    wrpcap(str(out / "scapy.pcap"), pkts)
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--keep", action="store_true", help="keep the written captures in bench/out/")
    ap.add_argument("--scapy-packets", type=int, default=20_000)
    args = ap.parse_args()
    os.sched_setaffinity(0, {0})
    OUT.mkdir(parents=True, exist_ok=True)
    warm = OUT / "sim-warm"
    write_outputs(simulate(load_scenario(ROOT / "configs/scenarios/behaviours/loss_burst.yaml")), warm)  # JIT
    shutil.rmtree(warm, ignore_errors=True)
    rows = []
    for scenario, snaplen in (("scale50", 0), ("scale50", 128), ("mixed", 0)):
        out = OUT / f"sim-{scenario}-{snaplen}"
        rows.append(_run(scenario, snaplen, out))
        if not args.keep:
            shutil.rmtree(out, ignore_errors=True)
    scapy = _scapy_rate(args.scapy_packets, OUT)
    print(
        f"{'scenario':9} {'snaplen':>7} {'VMs':>4} {'sim s':>6} {'packets':>10} {'MB':>8} {'gen s':>6} {'write s':>7} "
        f"{'total s':>7} {'packets/s':>10}"
    )
    for r in rows:
        print(
            f"{r['scenario']:9} {r['snaplen']:>7} {r['vms']:>4} {r['duration_s']:>6.0f} {r['packets']:>10,} "
            f"{r['bytes'] / 1e6:>8.0f} {r['generate_s']:>6.2f} {r['write_s']:>7.2f} {r['total_s']:>7.2f} "
            f"{r['packets_per_s']:>10,.0f}"
        )
    if scapy:
        print(f"scapy (build + wrpcap, {args.scapy_packets:,} TCP packets): {scapy:,.0f} packets/s")
        for r in rows:
            print(
                f"  netsentry simulate {r['scenario']} snaplen={r['snaplen']}: {r['packets_per_s'] / scapy:,.0f}x scapy"
            )
    scale = rows[0]
    print(
        f"target: 10-minute 50-VM scenario under 60 s: {'HOLDS' if scale['total_s'] < 60 else 'MISSED'} "
        f"({scale['total_s']:.1f} s)"
    )
    best = max(r["packets_per_s"] for r in rows)
    print(
        f"target: >= 500,000 packets/s written: {'HOLDS' if best >= 5e5 else 'MISSED'} (best {best:,.0f}/s; "
        f"full frames are bound by disk writes, see bench/README.md)"
    )
    (OUT / "simulate.json").write_text(json.dumps({"rows": rows, "scapy_packets_per_s": scapy}, indent=2))


if __name__ == "__main__":
    main()
