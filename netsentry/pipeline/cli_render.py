"""What the ``netsentry`` commands print: the consoles and one renderer per command's result.

Kept apart from :mod:`netsentry.pipeline.cli` so each command reads as options → stage call → one render call.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from netsentry.pipeline.core.units import bytes_binary

out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 1000)


def print_capture(summary: Any) -> None:
    """Per-file counts of a capture run, then the packet rate (or that the packets are up to date)."""
    if summary.skipped_unchanged:
        arp = f", {summary.arp:,} ARP frames" if summary.arp else ""
        out.print(f"packets up to date in {summary.out_dir} ({summary.packets:,} packets{arp}); use --force to rerun")
        return
    table = Table(title=f"capture → {summary.out_dir}", title_justify="left")
    for col in ("file", "format", "packets", "bytes", "non-IP", "malformed", "fragments"):
        table.add_column(col, justify="left" if col in ("file", "format") else "right")
    for s in summary.files:
        table.add_row(
            Path(s.path).name,
            s.format or "-",
            f"{s.packets:,}",
            bytes_binary(s.bytes),
            f"{s.non_ip:,}",
            f"{s.malformed:,}",
            f"{s.fragments:,}",
        )
    out.print(table)
    rate = summary.packets / summary.seconds if summary.seconds else 0.0
    out.print(f"{summary.packets:,} packets in {summary.seconds:.2f} s ({rate:,.0f} packets/s)")
    if summary.arp:
        out.print(f"{summary.arp:,} ARP frames (of the non-IP ones) → {summary.arp_dir}")


def print_flows(summary: Any) -> None:
    """Connection states, TCP health, the most retransmitting flows, then the totals line (or up to date)."""
    if summary.skipped_unchanged:
        out.print(f"flows up to date in {summary.out_dir} ({summary.flows:,} flows); use --force to rerun")
        return
    states = ", ".join(f"{k} {v:,}" for k, v in summary.conn_states.most_common(6))
    out.print(f"connection states: {states}", highlight=False)
    out.print(
        f"TCP health: {summary.retransmissions:,} retransmissions, {summary.dup_acks:,} duplicate ACKs, "
        f"{summary.zero_windows:,} zero-window advertisements",
        highlight=False,
    )
    if summary.hop_duplicates:
        out.print(f"{summary.hop_duplicates:,} packets seen again after a router hop at the same capture point "
                  "(TTL lower, all else equal) counted once, not as retransmissions", highlight=False)  # fmt: skip
    if summary.top_retransmitting:
        out.print(_retransmitting_table(summary.top_retransmitting))
    rate = summary.packets / summary.seconds if summary.seconds else 0.0
    out.print(
        f"{summary.flows:,} flows from {summary.packets:,} packets ({summary.capture_points} capture point(s)) "
        f"in {summary.seconds:.2f} s ({rate:,.0f} packets/s) → {summary.out_dir}"
    )


def _retransmitting_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="flows with the most retransmissions", title_justify="left")
    for col in ("capture point", "flow", "packets", "retransmissions", "dup ACKs", "handshake RTT ms", "state"):
        table.add_column(col, justify="left" if col in ("capture point", "flow", "state") else "right")
    for r in rows:
        rtt = r["handshake_rtt_ms"]
        table.add_row(
            r["capture_point"],
            f"{r['src_ip']}:{r['src_port']} → {r['dst_ip']}:{r['dst_port']} ({r['protocol']})",
            f"{r['bidirectional_packets']:,}",
            f"{r['retransmissions']:,}",
            f"{r['dup_acks']:,}",
            "-" if rtt is None else f"{rtt:.1f}",
            r["conn_state"],
        )
    return table


def print_simulation(sc: Any, res: Any, counts: dict[str, int], out_dir: Path, seconds: float) -> None:
    """Packets per capture point, one line per planted label, then the totals line."""
    table = Table(title=f"simulate {sc.name} (seed {sc.seed}, {sc.duration_s:g} s) → {out_dir}", title_justify="left")
    for col in ("capture point", "packets", "file"):
        table.add_column(col, justify="right" if col == "packets" else "left")
    for point, n in counts.items():
        table.add_row(point, f"{n:,}", str(out_dir / f"{point}.pcap"))
    out.print(table)
    for lab in res.labels:
        out.print(f"  {lab.kind:10} {lab.scenario:22} {lab.scope_type}:{lab.scope} {lab.row()['start']} → "
                  f"{lab.row()['end']}", highlight=False)  # fmt: skip
    total = sum(counts.values())
    out.print(
        f"{len(res.cloud)} VMs, {len(res.conns):,} connections, {total:,} packets written in {seconds:.2f} s "
        f"({total / seconds:,.0f} packets/s); labels: {out_dir / 'labels.csv'}",
        highlight=False,
    )


def print_lab(sc: Any, res: Any) -> None:
    """Bytes per capture file, one line per label (as measured), then the totals line."""
    from rich.markup import escape

    table = Table(title=f"lab {sc.name} ({sc.duration_s:g} s) → {res.out_dir}", title_justify="left")
    for col in ("capture file", "bytes"):
        table.add_column(col, justify="right" if col == "bytes" else "left")
    for name, size in sorted(res.capture_bytes.items()):
        table.add_row(escape(name), f"{size:,}")
    out.print(table)
    for lab in res.labels:
        row = lab.row()
        out.print(f"  {lab.kind:10} {lab.scenario:20} {lab.scope_type}:{escape(lab.scope)} {row['start']} → "
                  f"{row['end']}", highlight=False)  # fmt: skip
    if res.cleaned:
        out.print(f"removed {len(res.cleaned)} namespace(s) an earlier, dead lab run left behind", highlight=False)
    out.print(
        f"{len(res.labels)} events in {res.seconds:.1f} s; labels: {res.out_dir / 'labels.csv'}; next: "
        f"netsentry run {res.out_dir} -w WORKSPACE --tenants {res.out_dir / 'tenants.yaml'}",
        highlight=False,
    )


def print_features(summary: Any) -> None:
    """Window counts (or up to date), then the labelled windows per scenario."""
    if summary.skipped_unchanged:
        out.print(f"features up to date in {summary.out_dir}; use --force to rebuild", highlight=False)
    else:
        out.print(
            f"{summary.tenant_rows:,} tenant windows and {summary.fault_rows:,} fault windows in "
            f"{summary.seconds:.2f} s → {summary.out_dir}",
            highlight=False,
        )
    for what, pos in (("compromise", summary.tenant_positive), ("fault", summary.fault_positive)):
        if pos:
            out.print(f"labelled {what} windows: " + ", ".join(f"{k} {v}" for k, v in sorted(pos.items())),
                      highlight=False)  # fmt: skip


def print_training(res: Any, target_fpr: float) -> None:
    """The registered version's metrics table, then where it was logged."""
    table = Table(title=f"{res.registered_name} v{res.version} ({res.model_name})", title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k in ("roc_auc", "pr_auc", f"tpr_at_{target_fpr:g}_fpr", "precision", "recall", "f1", "fpr"):
        if k in res.metrics:
            table.add_row(k, f"{res.metrics[k]:.4f}")
    table.add_row("threshold", f"{res.threshold:.6g}")
    table.add_row("train / test windows", f"{res.n_train:,} / {res.n_test:,}")
    for k, v in res.recall_by_scenario.items():
        table.add_row(f"recall {k}", f"{v:.3f}")
    out.print(table)
    out.print(
        f"run {res.run_id} in {res.tracking_uri}; model {res.registered_name} version {res.version} "
        f"aliases: {', '.join(res.aliases)} ({res.seconds:.1f} s)",
        highlight=False,
    )


def print_findings(result: Any, fail_on: str = "medium") -> None:
    """Skipped kinds, the findings table (low severity only counted unless ``fail_on`` is low), how many findings
    are below ``fail_on`` (they do not make the exit code 3), then where findings and report are."""
    for kind, why in result.skipped_kinds.items():
        err.print(f"[yellow]{kind}: skipped[/]: {why}", highlight=False, soft_wrap=True)
    models = ", ".join(f"{r.name or r.uri} v{r.version}" if r.version else r.uri for r in result.models.values())
    shown = [f for f in result.findings if f.severity != "low" or fail_on == "low"]
    if shown:
        out.print(_findings_table(shown, models))
    elif not result.findings:
        out.print(f"nothing flagged ({models})", highlight=False)
    below = _below(result.findings, fail_on)
    if below:
        hidden = " (low ones: single windows near the threshold or too little evidence; not listed here)"
        out.print(f"{below} below --fail-on {fail_on}, so not failing: in the report and the JSON"
                  f"{hidden if len(shown) < len(result.findings) else ''}", highlight=False)  # fmt: skip
    _print_not_judged(getattr(result, "not_judged", []))
    state = " (up to date; --force reruns)" if result.skipped_unchanged else ""
    out.print(f"findings: {result.findings_dir}; report: {result.report}{state}", highlight=False)
    if result.run_id:
        out.print(f"inspection run {result.run_id}; browse runs and models with "
                  f"`netsentry ui --tracking-uri {result.tracking_uri}`", highlight=False)  # fmt: skip


def _print_not_judged(items: list[dict[str, Any]], shown: int = 5) -> None:
    """What the capture was too short or thin to judge, by behaviour, then the first few (never silently clean)."""
    if not items:
        return
    from rich.markup import escape

    by_what = Counter(str(j.get("what", "?")) for j in items)
    scopes = len({j.get("scope") for j in items})
    kinds = ", ".join(f"{n} {w}" for w, n in by_what.items())
    out.print(f"[yellow]not judged[/] ({escape(kinds)}; {scopes} scope(s)): too short or too thin a capture",
              highlight=False)  # fmt: skip
    for j in items[:shown]:
        out.print(f"  {escape(str(j.get('scope')))} {escape(str(j.get('what')))}: {escape(str(j.get('reason')))}",
                  highlight=False, soft_wrap=True)  # fmt: skip
    if len(items) > shown:
        out.print(f"  … {len(items) - shown} more in the report and the JSON", highlight=False)


def _below(findings: list[Any], fail_on: str) -> str:
    """'2 findings (1 medium, 1 low)' below ``fail_on``; '' when none."""
    order = ("high", "medium", "low")
    worst = order.index(fail_on) if fail_on in order else 1
    counts = {s: sum(f.severity == s for f in findings) for s in order[worst + 1 :]}
    n = sum(counts.values())
    if not n:
        return ""
    parts = ", ".join(f"{k} {s}" for s, k in counts.items() if k)
    return f"{n} finding{'s' if n != 1 else ''} ({parts})"


def _findings_table(shown: list[Any], models: str) -> Table:
    from netsentry.pipeline.inspect.findings import hhmmss

    table = Table(title=f"findings ({models})", title_justify="left", show_lines=False)
    for col in ("severity", "kind", "scope", "from", "to", "windows", "score / thr", "what"):
        table.add_column(col, justify="right" if col in ("windows", "score / thr") else "left",
                         overflow="fold")  # fmt: skip
    colour = {"high": "bold red", "medium": "yellow", "low": "dim"}
    for f in shown:
        table.add_row(
            f"[{colour[f.severity]}]{f.severity}[/]",
            f.kind if f.type == f.kind else f"{f.kind}: {f.type}",
            f.scope + (f" ({f.ip})" if f.ip and f.ip != f.scope else ""),
            hhmmss(f.start_ns), hhmmss(f.end_ns), f"{f.windows:,}", f"{f.score:.3g} / {f.threshold:.3g}",
            f.summary,
        )  # fmt: skip
    return table


def print_run(workspace: Path, report: Any, seconds: float) -> None:
    """One row per pipeline stage (ran, up to date, skipped), then the total time."""
    table = Table(title=f"netsentry run → {workspace}", title_justify="left")
    for col in ("stage", "status", "what", "seconds"):
        table.add_column(col, justify="right" if col == "seconds" else "left")
    for st in report.stages:
        style = {"ran": "green", "up to date": "cyan"}.get(st.status, "yellow")
        table.add_row(st.stage, f"[{style}]{st.status}[/]", st.detail, f"{st.seconds:.1f}" if st.seconds else "")
    out.print(table)
    out.print(f"all stages in {seconds:.1f} s", highlight=False)


def print_retrain(res: Any, spool: Path) -> None:
    """The champion/challenger decisions as a table and as one plain line each, then the decision run."""
    if res.status == "no new data":
        wm = res.watermark.updated or "never"
        out.print(f"no new captures in {spool} since the last run ({wm}); nothing to do", highlight=False)
        return
    table = Table(title=f"retrain: {len(res.files)} new capture(s), batch {res.batch.name if res.batch else ''}",
                  title_justify="left")  # fmt: skip
    for col in ("kind", "champion", "challenger", "challenger metrics", "champion metrics", "decision", "reason"):
        table.add_column(col, overflow="fold")
    for d in res.decisions:
        shown = ("roc_auc", "pr_auc", "fpr", "recall") if d.mode == "labelled" else ("fpr", "planted_recall")

        def fmt(m: dict | None, keys: tuple[str, ...] = shown) -> str:
            return "-" if not m else ", ".join(f"{k} {m[k]:.3f}" for k in keys if k in m)

        verdict = "[bold green]promoted[/]" if d.promote else "[yellow]kept champion[/]"
        table.add_row(d.kind, f"v{d.champion_before}" if d.champion_before else "-", f"v{d.challenger}",
                      fmt(d.metrics.get("challenger")), fmt(d.metrics.get("champion")), verdict, d.reason)  # fmt: skip
    out.print(table)
    for d in res.decisions:  # one plain line per decision, for logs and scripts
        kept = f"kept champion v{d.champion_before}" if d.champion_before else "no champion"
        verdict = f"promoted v{d.challenger} to champion" if d.promote else f"{kept}, refused v{d.challenger}"
        out.print(f"{d.kind}: {verdict}: {d.reason}", highlight=False, soft_wrap=True)
    out.print(f"decision run {res.run_id}; watermark advanced ({res.watermark.batches} batches so far; "
              f"{res.seconds:.1f} s)", highlight=False)  # fmt: skip


def print_model_versions(tracker: Any, kind: str) -> None:
    """Every registered version of one kind with aliases, training metrics and promotion record."""
    table = Table(title=f"netsentry-{kind} ({tracker.uri})", title_justify="left")
    for col in ("version", "aliases", "model", "roc_auc", "fpr", "created (UTC)", "promoted", "replaced"):
        table.add_column(col)
    for v in tracker.versions(kind):
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(v.created_ms / 1000))
        table.add_row(v.version, ", ".join(sorted(v.aliases)) or "-", v.model or "-",
                      f"{v.metrics['roc_auc']:.4f}" if "roc_auc" in v.metrics else "-",
                      f"{v.metrics['fpr']:.4f}" if "fpr" in v.metrics else "-", created,
                      v.promoted_at or "-", f"v{v.previous_champion}" if v.previous_champion else "-")  # fmt: skip
    out.print(table)
