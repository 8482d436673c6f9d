"""Capture and flows throughput of netsentry against tshark → pandas, pyshark and dpkt, side by side.

Every measurement runs in a fresh subprocess pinned to one core (the targets are per core), so
peak RSS is per tool; a peer that pipes from tshark is charged tshark's peak too. netsentry's
numba functions are warmed on a tiny capture first and the best of ``--repeat`` warm runs is
reported; cold-start seconds (empty numba cache, and with numba's on-disk cache) are separate.

    python -m bench.capture_flows                 # 1M packets, ~2 minutes on 2 cores
    python -m bench.capture_flows --quick         # 200k packets, smoke test
    python -m bench.capture_flows --memory-test   # ≥ 2 GiB capture through capture+flows in ≤ 1 GB RSS

Results are printed and written to ``bench/out/results.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.make_capture import OUT_DIR, MissingDataError, build_capture, load_template

RESULTS_JSON = OUT_DIR / "results.json"
TARGET_CAPTURE_PPS = 2_000_000
TARGET_CAPTURE_FLOWS_PPS = 1_000_000
TSHARK_FULL_MAX = 2_000_000  # tshark → pandas reads the whole file up to this many packets (~60 s)
DPKT_FULL_MAX = 4_000_000  # dpkt likewise (~60 s)
WARM_PACKETS = 5_000
MEMORY_TEST_BYTES = 2 << 30  # 2 GiB capture
MEMORY_BUDGET_BYTES = 1_000_000_000  # 1 GB peak RSS
MEMORY_TEST_MIN_FREE = 6_000_000_000
MEMORY_TEST_BATCH_PACKETS = 0  # run_flows(batch_packets=) for the memory test; 0: the library default
MB = 1e6

# Fields the peers extract: the header fields netsentry's packets table carries.
TSHARK_FIELDS = (
    "frame.time_epoch", "frame.len", "ip.src", "ip.dst", "ip.proto", "ip.ttl", "ip.id",
    "tcp.srcport", "tcp.dstport", "udp.srcport", "udp.dstport", "tcp.flags", "tcp.seq_raw",
    "tcp.ack_raw", "tcp.window_size_value",
)  # fmt: skip
# tshark at its fastest for header fields: no name resolution, reassembly or sequence analysis.
TSHARK_OPTS = (
    "-n", "-o", "tcp.desegment_tcp_streams:FALSE", "-o", "tcp.analyze_sequence_numbers:FALSE",
    "-o", "ip.defragment:FALSE", "-o", "tcp.calculate_timestamps:FALSE",
)  # fmt: skip


# --------------------------------------------------------------------------- workers (child side)


def _peak_rss_bytes() -> tuple[int, int]:
    """(this process's peak RSS, the largest peak RSS of its waited-for children), bytes."""
    import resource

    return (
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024,
    )


def _w_ns_capture(a: argparse.Namespace, t0: float) -> dict[str, Any]:
    from netsentry.pipeline.capture.stage import CaptureOptions, run_capture

    opts = CaptureOptions(force=True, chunk_bytes=a.chunk_bytes) if a.chunk_bytes else CaptureOptions(force=True)
    with tempfile.TemporaryDirectory(dir=a.scratch) as d:
        run_capture([a.warm], d, opts)
    warm_s = time.perf_counter() - t0
    runs, s = [], None
    for _ in range(a.repeat):
        with tempfile.TemporaryDirectory(dir=a.scratch) as d:
            t = time.perf_counter()
            s = run_capture([a.input], d, opts)
            runs.append(time.perf_counter() - t)
    assert s is not None
    return {"records": sum(f.records for f in s.files), "ip_packets": s.packets, "seconds": min(runs),
            "runs_s": runs, "startup_s": warm_s}  # fmt: skip


def _w_ns_capture_flows(a: argparse.Namespace, t0: float) -> dict[str, Any]:
    from netsentry.pipeline.capture.stage import CaptureOptions, run_capture
    from netsentry.pipeline.flows.assemble import FlowConfig
    from netsentry.pipeline.flows.stage import run_flows

    opts = CaptureOptions(force=True, chunk_bytes=a.chunk_bytes) if a.chunk_bytes else CaptureOptions(force=True)
    fkw = {"batch_packets": a.batch_packets} if a.batch_packets else {}
    with tempfile.TemporaryDirectory(dir=a.scratch) as d:
        run_capture([a.warm], d, opts)
        run_flows(d, FlowConfig(), force=True, **fkw)
    warm_s = time.perf_counter() - t0
    best: dict[str, Any] | None = None
    totals = []
    for _ in range(a.repeat):
        with tempfile.TemporaryDirectory(dir=a.scratch) as d:
            t = time.perf_counter()
            s = run_capture([a.input], d, opts)
            t1 = time.perf_counter()
            f = run_flows(d, FlowConfig(), force=True, **fkw)
            t2 = time.perf_counter()
        totals.append(t2 - t)
        if best is None or t2 - t < best["seconds"]:
            best = {"records": sum(x.records for x in s.files), "ip_packets": s.packets,
                    "flow_packets": f.packets, "flows": f.flows, "seconds": t2 - t,
                    "capture_s": t1 - t, "flows_s": t2 - t1}  # fmt: skip
    assert best is not None
    return {**best, "runs_s": totals, "startup_s": warm_s}


def _w_ns_cold(a: argparse.Namespace, t0: float) -> dict[str, Any]:
    """Import + first capture+flows of a tiny file, as a fresh process sees it (NUMBA_CACHE_DIR set by caller)."""
    from netsentry.pipeline.capture.stage import CaptureOptions, run_capture
    from netsentry.pipeline.flows.stage import run_flows

    t_imp = time.perf_counter() - t0
    with tempfile.TemporaryDirectory(dir=a.scratch) as d:
        s = run_capture([a.input], d, CaptureOptions(force=True))
        run_flows(d, force=True)
    return {"records": sum(x.records for x in s.files), "seconds": time.perf_counter() - t0, "import_s": t_imp}


def _w_tshark_pandas(a: argparse.Namespace, t0: float) -> dict[str, Any]:
    import pandas as pd

    cmd = ["tshark", *TSHARK_OPTS, "-r", str(a.input), "-T", "fields", "-E", "separator=\t", "-E", "occurrence=f"]
    for f in TSHARK_FIELDS:
        cmd += ["-e", f]
    str_cols = {"ip.src": str, "ip.dst": str, "tcp.flags": str}
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    df = pd.read_csv(proc.stdout, sep="\t", header=None, names=list(TSHARK_FIELDS), dtype=str_cols)
    rc = proc.wait()
    secs = time.perf_counter() - t
    if rc != 0:
        raise RuntimeError(f"tshark exited with {rc}")
    return {"records": len(df), "seconds": secs}


def _w_pyshark(a: argparse.Namespace, t0: float) -> dict[str, Any]:
    """Plain pyshark (EK JSON), touching the header fields a user would read."""
    import pyshark

    rows = []
    t = time.perf_counter()
    cap = pyshark.FileCapture(str(a.input), use_ek=True, keep_packets=False)
    try:
        for pkt in cap:
            ts = float(pkt.sniff_timestamp)
            if "ip" in pkt:
                ip = pkt.ip
                src, dst, proto = ip.src.value, ip.dst.value, ip.proto
                sport = dport = 0
                if "tcp" in pkt:
                    sport, dport = pkt.tcp.srcport, pkt.tcp.dstport
                elif "udp" in pkt:
                    sport, dport = pkt.udp.srcport, pkt.udp.dstport
                rows.append((ts, src, dst, proto, sport, dport))
            else:
                rows.append((ts, None, None, 0, 0, 0))
    finally:
        cap.close()
    return {"records": len(rows), "seconds": time.perf_counter() - t}


def _w_pyshark_engine(a: argparse.Namespace, t0: float) -> dict[str, Any]:
    """netsentry's own cross-check engine (``--engine pyshark``): pyshark EK → packets tables."""
    from netsentry.pipeline.capture.pyshark_reader import read_packets_pyshark
    from netsentry.pipeline.capture.reader import CaptureStats

    stats = CaptureStats(path=str(a.input))
    t = time.perf_counter()
    rows = sum(tb.num_rows for tb in read_packets_pyshark(a.input, stats=stats))
    return {"records": stats.records, "ip_packets": rows, "seconds": time.perf_counter() - t}


def _w_dpkt(a: argparse.Namespace, t0: float) -> dict[str, Any]:
    """dpkt: decode Ethernet/IP/TCP/UDP headers of every frame, collect them into a DataFrame."""
    import dpkt
    import pandas as pd

    n = bad = 0
    rows: list[tuple] = []
    t = time.perf_counter()
    with open(a.input, "rb") as f:
        for ts, buf in dpkt.pcap.Reader(f):
            n += 1
            try:
                ip = dpkt.ethernet.Ethernet(buf).data
                if isinstance(ip, dpkt.ip.IP):
                    l4 = ip.data
                    if isinstance(l4, dpkt.tcp.TCP):
                        rows.append((ts, len(buf), ip.src, ip.dst, ip.p, ip.ttl, ip.id, l4.sport, l4.dport,
                                     l4.flags, l4.seq, l4.ack, l4.win))  # fmt: skip
                    elif isinstance(l4, dpkt.udp.UDP):
                        rows.append((ts, len(buf), ip.src, ip.dst, ip.p, ip.ttl, ip.id, l4.sport, l4.dport,
                                     0, 0, 0, 0))  # fmt: skip
                    else:
                        rows.append((ts, len(buf), ip.src, ip.dst, ip.p, ip.ttl, ip.id, 0, 0, 0, 0, 0, 0))
            except (dpkt.UnpackError, dpkt.NeedData):
                bad += 1
    cols = ["ts", "frame_len", "src", "dst", "proto", "ttl", "ip_id", "sport", "dport", "flags", "seq", "ack", "win"]
    df = pd.DataFrame.from_records(rows, columns=cols)
    return {"records": n, "ip_packets": len(df), "malformed": bad, "seconds": time.perf_counter() - t}


WORKERS: dict[str, Callable[[argparse.Namespace, float], dict[str, Any]]] = {
    "ns-capture": _w_ns_capture,
    "ns-capture-flows": _w_ns_capture_flows,
    "ns-cold": _w_ns_cold,
    "tshark-pandas": _w_tshark_pandas,
    "pyshark": _w_pyshark,
    "pyshark-engine": _w_pyshark_engine,
    "dpkt": _w_dpkt,
}


def worker_main(a: argparse.Namespace, t0: float) -> int:
    """Child side: pin to one core, run one tool, print one JSON line."""
    os.sched_setaffinity(0, {a.core})
    res = WORKERS[a.worker](a, t0)
    self_rss, child_rss = _peak_rss_bytes()
    res.update(self_rss=self_rss, child_rss=child_rss)
    print("RESULT " + json.dumps(res), flush=True)
    return 0


# --------------------------------------------------------------------------- parent side


@dataclass
class Result:
    """One tool's measurement."""

    key: str
    label: str
    scope: str
    records: int = 0
    seconds: float = 0.0
    peak_rss: int = 0  # bytes: the process's peak plus its largest child's peak (tshark)
    sampled_peak_rss: int = 0  # bytes: the largest sum of the process tree's RSS seen by polling
    extra: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    @property
    def pps(self) -> float:
        return self.records / self.seconds if self.seconds > 0 and not self.error else 0.0


class _TreeRssSampler(threading.Thread):
    """Polls the RSS of a process and its descendants; keeps the largest sum seen."""

    def __init__(self, pid: int, every_s: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.pid, self.every_s, self.peak = pid, every_s, 0
        self._stop_evt = threading.Event()

    def run(self) -> None:
        try:
            import psutil
        except ImportError:
            return
        try:
            root = psutil.Process(self.pid)
        except psutil.Error:
            return
        while not self._stop_evt.is_set():
            total = 0
            with contextlib.suppress(psutil.Error):
                total = root.memory_info().rss
                for c in root.children(recursive=True):
                    with contextlib.suppress(psutil.Error):
                        total += c.memory_info().rss
            self.peak = max(self.peak, total)
            self._stop_evt.wait(self.every_s)

    def stop(self) -> None:
        self._stop_evt.set()
        self.join()


def run_worker(
    key: str, label: str, scope: str, worker: str, input_path: Path, ctx: dict[str, Any],
    extra_args: list[str] | None = None, env: dict[str, str] | None = None, timeout_s: float = 900,
) -> Result:  # fmt: skip
    """Run one tool in a fresh pinned subprocess and collect its JSON result."""
    cmd = [sys.executable, "-m", "bench.capture_flows", "--worker", worker, "--input", str(input_path),
           "--warm", str(ctx["warm"]), "--scratch", str(ctx["scratch"]), "--core", str(ctx["core"]),
           "--repeat", str(ctx["repeat"]), *(extra_args or [])]  # fmt: skip
    res = Result(key=key, label=label, scope=scope)
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen(cmd, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})  # fmt: skip
    sampler = _TreeRssSampler(proc.pid)
    sampler.start()
    t_start = time.perf_counter()
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        err = f"timed out after {timeout_s:.0f} s\n{err}"
    finally:
        sampler.stop()
    wall = time.perf_counter() - t_start
    line = next((ln for ln in reversed(out.splitlines()) if ln.startswith("RESULT ")), None)
    if proc.returncode != 0 or line is None:
        res.error = (err.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        return res
    data = json.loads(line.removeprefix("RESULT "))
    res.records = int(data.pop("records"))
    res.seconds = float(data.pop("seconds"))
    res.peak_rss = int(data["self_rss"]) + int(data["child_rss"])
    res.sampled_peak_rss = sampler.peak
    res.extra = {**data, "process_wall_s": wall}
    return res


def _fmt_int(x: float) -> str:
    return f"{x:,.0f}"


def _tool_available(name: str) -> str | None:
    """None when usable, else why not."""
    if name in ("tshark-pandas", "pyshark", "pyshark-engine") and shutil.which("tshark") is None:
        return "tshark not installed"
    mod = {"pyshark": "pyshark", "pyshark-engine": "pyshark", "dpkt": "dpkt"}.get(name)
    if mod:
        import importlib.util

        if importlib.util.find_spec(mod) is None:
            return f"{mod} not installed"
    return None


def _machine() -> dict[str, Any]:
    cpu = ""
    with contextlib.suppress(OSError):
        for ln in Path("/proc/cpuinfo").read_text().splitlines():
            if ln.startswith("model name"):
                cpu = ln.split(":", 1)[1].strip()
                break
    tshark = ""
    if shutil.which("tshark"):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            tshark = subprocess.run(["tshark", "--version"], capture_output=True, text=True, timeout=20).stdout
            tshark = tshark.splitlines()[0].split(" (Git")[0] if tshark else ""
    rev = ""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        root = Path(__file__).resolve().parents[1]
        git = subprocess.run(["git", "-C", str(root), "describe", "--always", "--dirty"], capture_output=True,
                             text=True, timeout=20)  # fmt: skip
        rev = git.stdout.strip()
    return {"cores": os.cpu_count(), "cpu": cpu, "python": platform.python_version(), "tshark": tshark,
            "git": rev, "loadavg_at_start": os.getloadavg()}  # fmt: skip


def _pick_cores() -> tuple[int, int | None]:
    """(core for the measured child, core for this process or None)."""
    cores = sorted(os.sched_getaffinity(0))
    return cores[0], (cores[1] if len(cores) > 1 else None)


def _save(section: str, payload: dict[str, Any]) -> None:
    data: dict[str, Any] = {}
    if RESULTS_JSON.is_file():
        with contextlib.suppress(ValueError):
            data = json.loads(RESULTS_JSON.read_text())
    data[section] = payload
    RESULTS_JSON.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_JSON.write_text(json.dumps(data, indent=2, default=str) + "\n")


def _print_table(results: list[Result], cap: Result | None, cf: Result | None) -> None:
    head = ("tool", "scope", "packets", "seconds", "packets/s", "peak RSS MB", "capture ×", "capture+flows ×")
    rows = []
    for r in results:
        if r.error:
            rows.append((r.label, r.scope, "-", "-", "-", "-", "-", f"error: {r.error}"))
            continue
        ratio_c = f"{cap.pps / r.pps:,.1f}" if cap and cap.pps and r is not cap and r is not cf else ""
        ratio_cf = f"{cf.pps / r.pps:,.1f}" if cf and cf.pps and r is not cap and r is not cf else ""
        rows.append((r.label, r.scope, _fmt_int(r.records), f"{r.seconds:.2f}", _fmt_int(r.pps),
                     f"{r.peak_rss / MB:,.0f}", ratio_c, ratio_cf))  # fmt: skip
    widths = [max(len(str(x[i])) for x in [head, *rows]) for i in range(len(head))]
    line = "  ".join(f"{{:{'<' if i < 2 else '>'}{w}}}" for i, w in enumerate(widths))
    print(line.format(*head))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print(line.format(*row))


def throughput(args: argparse.Namespace) -> int:
    """Build the captures, run every tool side by side, print the table and write JSON."""
    t_build = time.perf_counter()
    template = load_template()
    full = build_capture(args.packets, template=template)
    warm = build_capture(WARM_PACKETS, template=template)
    sl = build_capture(args.slice, template=template)
    ts_n = min(args.packets, TSHARK_FULL_MAX)
    ts_path = full if ts_n == args.packets else build_capture(ts_n, template=template)
    dp_n = min(args.packets, DPKT_FULL_MAX)
    dp_path = full if dp_n == args.packets else build_capture(dp_n, template=template)
    build_s = time.perf_counter() - t_build
    core, parent_core = _pick_cores()
    if parent_core is not None:
        os.sched_setaffinity(0, {parent_core})
    scratch = Path(tempfile.mkdtemp(prefix="scratch-", dir=OUT_DIR))
    ctx = {"warm": warm, "scratch": scratch, "core": core, "repeat": args.repeat}
    machine = _machine()
    print(f"capture: {full.name}  {full.stat().st_size / MB:,.1f} MB, {args.packets:,} packets "
          f"(built/cached in {build_s:.1f} s)")  # fmt: skip
    print(f"machine: {machine['cores']} cores ({machine['cpu']}), each tool pinned to core {core}; "
          f"load average {machine['loadavg_at_start'][0]:.2f}")  # fmt: skip

    def scope(n: int) -> str:
        return "full" if n == args.packets else f"first {n:,}"

    plan = [
        ("ns_capture", "netsentry capture", scope(args.packets), "ns-capture", full, []),
        ("ns_capture_flows", "netsentry capture+flows", scope(args.packets), "ns-capture-flows", full, []),
        ("tshark_pandas", "tshark -T fields → pandas", scope(ts_n), "tshark-pandas", ts_path, []),
        ("dpkt", "dpkt (decode → DataFrame)", scope(dp_n), "dpkt", dp_path, []),
        ("pyshark", "pyshark EK", scope(args.slice), "pyshark", sl, []),
        ("pyshark_engine", "netsentry --engine pyshark", scope(args.slice), "pyshark-engine", sl, []),
    ]
    if args.tools:
        plan = [p for p in plan if p[0] in args.tools]
    results: list[Result] = []
    try:
        for key, label, sc, worker, path, extra in plan:
            why = _tool_available(worker)
            if why:
                results.append(Result(key, label, sc, error=why))
                print(f"  {label:<28} skipped: {why}")
                continue
            r = run_worker(key, label, sc, worker, path, ctx, extra)
            results.append(r)
            msg = f"error: {r.error}" if r.error else f"{r.records:,} packets in {r.seconds:.2f} s = {r.pps:,.0f}/s"
            print(f"  {label:<28} {msg}", flush=True)
        cold = _cold_start(ctx) if not args.tools or "cold" in args.tools else {}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    by = {r.key: r for r in results}
    cap, cf = by.get("ns_capture"), by.get("ns_capture_flows")
    print()
    _print_table(results, cap, cf)
    print()
    if cf and not cf.error:
        e = cf.extra
        print(f"capture+flows split: capture {e['capture_s']:.2f} s + flows {e['flows_s']:.2f} s; "
              f"{e['flows']:,} flows = {e['flows'] / cf.seconds:,.0f} flows/s end to end, "
              f"{e['flows'] / e['flows_s']:,.0f} flows/s in the flows stage")  # fmt: skip
    runs = [f"{r.label} {', '.join(f'{x:.2f}' for x in r.extra['runs_s'])} s"
            for r in (cap, cf) if r and not r.error]  # fmt: skip
    if runs:
        print("warm runs (best reported): " + "; ".join(runs))
    if cold:
        print(f"cold start (fresh process: imports + first {WARM_PACKETS:,}-packet capture+flows): "
              f"{cold['jit_s']:.1f} s with an empty numba cache (JIT), {cold['cached_s']:.1f} s with numba's "
              f"on-disk cache; warm numbers above exclude it")  # fmt: skip
    ratios = {}
    for r in results:
        if r.error or r is cap or r is cf or not r.pps:
            continue
        ratios[r.key] = {"capture_x": cap.pps / r.pps if cap and cap.pps else None,
                         "capture_flows_x": cf.pps / r.pps if cf and cf.pps else None}  # fmt: skip
        parts = []
        if cap and cap.pps:
            parts.append(f"capture {cap.pps / r.pps:,.1f}×")
        if cf and cf.pps:
            parts.append(f"capture+flows {cf.pps / r.pps:,.1f}×")
        print(f"netsentry vs {r.label}: " + ", ".join(parts) + " faster")
    targets = {}
    if cap and cap.pps:
        targets["capture"] = {"pps": cap.pps, "target": TARGET_CAPTURE_PPS, "holds": cap.pps >= TARGET_CAPTURE_PPS}
    if cf and cf.pps:
        targets["capture_flows"] = {"pps": cf.pps, "target": TARGET_CAPTURE_FLOWS_PPS,
                                    "holds": cf.pps >= TARGET_CAPTURE_FLOWS_PPS}  # fmt: skip
    for name, t in targets.items():
        verdict = "HOLDS" if t["holds"] else "MISSED"
        print(f"target {name.replace('_', '+')} ≥ {t['target']:,} packets/s on one core: {verdict} "
              f"({t['pps']:,.0f}/s)")  # fmt: skip
    machine["loadavg_at_end"] = os.getloadavg()
    _save("throughput", {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "machine": machine,
        "capture": {"path": str(full), "packets": args.packets, "bytes": full.stat().st_size},
        "repeat": args.repeat,
        "results": [{**asdict(r), "packets_per_s": r.pps} for r in results],
        "cold_start": cold,
        "ratios": ratios,
        "targets": targets,
    })  # fmt: skip
    print(f"\nwrote {RESULTS_JSON}")
    return 0


def _cold_start(ctx: dict[str, Any]) -> dict[str, float]:
    """Seconds from a fresh process to its first tiny capture+flows: empty numba cache, then cached."""
    cache = Path(tempfile.mkdtemp(prefix="numba-cache-", dir=ctx["scratch"]))
    env = {"NUMBA_CACHE_DIR": str(cache)}
    out = {}
    for name in ("jit_s", "cached_s"):
        r = run_worker("ns_cold", "cold", "", "ns-cold", ctx["warm"], ctx, env=env)
        if r.error:
            return {}
        out[name] = r.extra["process_wall_s"]
        out[name.replace("_s", "_import_s")] = r.extra["import_s"]
    return out


def memory_test(args: argparse.Namespace) -> int:
    """A ≥ 2 GiB capture through capture+flows in one pinned process; PASS if peak RSS ≤ 1 GB."""
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(OUT_DIR).free
    if free < MEMORY_TEST_MIN_FREE:
        need = MEMORY_TEST_MIN_FREE / 1e9
        print(f"memory test skipped: {free / 1e9:.1f} GB free under {OUT_DIR}, need {need:.0f} GB")
        return 0
    t = time.perf_counter()
    template = load_template()
    big = build_capture(size_bytes=MEMORY_TEST_BYTES, template=template)
    warm = build_capture(WARM_PACKETS, template=template)
    build_s = time.perf_counter() - t
    expected = int(big.name.rsplit("-", 1)[1].removesuffix("p.pcap"))
    size = big.stat().st_size
    print(f"memory test: {big.name}  {size / 2**30:.2f} GiB, {expected:,} packets (built/cached in {build_s:.1f} s)")
    core, parent_core = _pick_cores()
    if parent_core is not None:
        os.sched_setaffinity(0, {parent_core})
    scratch = Path(tempfile.mkdtemp(prefix="scratch-", dir=OUT_DIR))
    ctx = {"warm": warm, "scratch": scratch, "core": core, "repeat": 1}
    extra = []
    if args.mem_chunk_bytes:
        extra += ["--chunk-bytes", str(args.mem_chunk_bytes)]
    if args.mem_batch_packets:
        extra += ["--batch-packets", str(args.mem_batch_packets)]
    settings = (f"chunk_bytes={args.mem_chunk_bytes or 'default'}, "
                f"batch_packets={args.mem_batch_packets or 'default'}")  # fmt: skip
    print(f"  running capture+flows pinned to core {core} ({settings}) ...", flush=True)
    try:
        r = run_worker("memory_test", "netsentry capture+flows", "full", "ns-capture-flows", big, ctx, extra,
                       timeout_s=1800)  # fmt: skip
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        if not args.keep:
            big.unlink(missing_ok=True)
    if r.error:
        print(f"memory test FAIL: {r.error}")
        _save("memory_test", {"error": r.error, "settings": settings})
        return 1
    e = r.extra
    peak = max(r.peak_rss, r.sampled_peak_rss)
    all_read = r.records == expected and e["flow_packets"] == e["ip_packets"]
    ok = peak <= MEMORY_BUDGET_BYTES and all_read
    print(
        f"  read {r.records:,} of {expected:,} records, {e['ip_packets']:,} IP packets → {e['flows']:,} flows "
        f"in {r.seconds:.1f} s ({r.pps:,.0f} packets/s; capture {e['capture_s']:.1f} s, flows {e['flows_s']:.1f} s)"
    )
    print(f"  peak RSS {peak / MB:,.0f} MB ({peak / 2**20:,.0f} MiB; ru_maxrss {r.peak_rss / MB:,.0f} MB, "
          f"sampled {r.sampled_peak_rss / MB:,.0f} MB), budget {MEMORY_BUDGET_BYTES / MB:,.0f} MB")  # fmt: skip
    print(
        f"memory test {'PASS' if ok else 'FAIL'}: peak RSS {'≤' if peak <= MEMORY_BUDGET_BYTES else '>'} 1 GB, "
        f"{'all' if all_read else 'NOT all'} packets read" + ("" if args.keep else f"; deleted {big.name}")
    )
    _save("memory_test", {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"), "capture_bytes": size, "expected_records": expected,
        "settings": settings, "result": {**asdict(r), "packets_per_s": r.pps}, "peak_rss": peak,
        "budget": MEMORY_BUDGET_BYTES, "pass": ok,
    })  # fmt: skip
    return 0 if ok else 1


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--packets", type=int, default=1_000_000, help="packets in the benchmark capture")
    ap.add_argument("--slice", type=int, default=20_000, help="packets given to the slow peers (pyshark)")
    ap.add_argument("--repeat", type=int, default=3, help="warm netsentry runs; the best is reported")
    ap.add_argument("--quick", action="store_true", help="200k packets, 5k slice, one repeat")
    ap.add_argument("--tools", nargs="*", help="only these result keys (ns_capture, tshark_pandas, ..., cold)")
    ap.add_argument("--memory-test", action="store_true", help="≥ 2 GiB capture, capture+flows in ≤ 1 GB RSS")
    ap.add_argument("--keep", action="store_true", help="keep the memory test's big capture")
    ap.add_argument("--mem-chunk-bytes", type=int, default=0, help="memory test: CaptureOptions.chunk_bytes")
    ap.add_argument(
        "--mem-batch-packets",
        type=int,
        default=MEMORY_TEST_BATCH_PACKETS,
        help=f"memory test: run_flows(batch_packets=), default {MEMORY_TEST_BATCH_PACKETS:,}; 0 = the library default",
    )
    # child side
    ap.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    ap.add_argument("--input", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--warm", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--scratch", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--core", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--chunk-bytes", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--batch-packets", type=int, default=0, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.quick:
        a.packets, a.slice, a.repeat = 200_000, 5_000, 1
    return a


def main(argv: list[str] | None = None) -> int:
    t0 = time.perf_counter()
    args = parse_args(argv)
    if args.worker:
        return worker_main(args, t0)
    try:
        return memory_test(args) if args.memory_test else throughput(args)
    except MissingDataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
