"""The ``netsentry`` command line: thin Typer commands over the library stages.

Options every command shares and the error handling live in :mod:`netsentry.pipeline.cli_options`, what the
commands print in :mod:`netsentry.pipeline.cli_render`.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from netsentry import __version__
from netsentry.pipeline import cli_render as render
from netsentry.pipeline.cli_models import models_app
from netsentry.pipeline.cli_options import (
    ConfigOpt,
    FailOnOpt,
    ForceOpt,
    TrackingUriOpt,
    WorkspaceOpt,
    checked_fail_on,
    fail_cleanly,
)
from netsentry.pipeline.cli_render import err, out
from netsentry.pipeline.core.errors import ConfigError, NetsentryError
from netsentry.pipeline.core.units import parse_duration_s

EXIT_CODES_HELP = (
    "Exit codes: 0 success (inspect: no finding at or above --fail-on); 1 unexpected error; 2 bad usage, config or "
    "missing input; 3 inspect: a finding at or above --fail-on (default medium); "
    "4 nothing usable read; 5 table does not match its contract; 6 tshark/dumpcap missing; "
    "7 live capture not permitted; 8 MLflow tracking store or registry unusable; 9 MLflow UI could not start; "
    "10 another retraining job holds the lock; 130 interrupted."
)

app = typer.Typer(
    name="netsentry",
    help="Packet captures from a multi-tenant cloud in; compromised tenants and transient faults out.",
    epilog=EXIT_CODES_HELP,
    context_settings={"help_option_names": ["-h", "--help"]},
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        out.print(f"netsentry {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress details.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )


@app.command()
@fail_cleanly
def capture(
    inputs: Annotated[
        list[str] | None,
        typer.Argument(help="pcap/pcapng files (optionally .gz), directories (searched recursively) or globs."),
    ] = None,
    workspace: WorkspaceOpt = None,
    config: ConfigOpt = None,
    iface: Annotated[str | None, typer.Option("--iface", "-i", help="Capture live from this interface.")] = None,
    duration: Annotated[float | None, typer.Option(help="Live: stop after this many seconds.")] = None,
    count: Annotated[int | None, typer.Option(help="Live: stop after this many packets.")] = None,
    ring_mb: Annotated[int, typer.Option(help="Live: start a new ring-buffer file every N MB.")] = 100,
    ring_files: Annotated[int, typer.Option(help="Live: keep at most N ring files (0: keep all).")] = 0,
    bpf: Annotated[str | None, typer.Option(help="Live: capture filter (BPF syntax).")] = None,
    engine: Annotated[
        str | None, typer.Option(help="fast (compiled reader) or pyshark (tshark dissectors; slow cross-check).")
    ] = None,
    tenants: Annotated[Path | None, typer.Option(help="Tenant map YAML (see configs/tenants.example.yaml).")] = None,
    capture_point: Annotated[
        str | None, typer.Option(help="Name of the tap for every input [default: each file's name].")
    ] = None,
    force: ForceOpt = False,
) -> None:
    """Read captures into WORKSPACE/packets (one row per packet, headers only, no payload).

    Bad records are counted and skipped; the command fails only when nothing usable was read.
    """
    from netsentry.pipeline.capture.stage import run_capture
    from netsentry.pipeline.core.config import load_settings
    from netsentry.pipeline.core.progress import progress_bar
    from netsentry.pipeline.core.stage_options import capture_options

    settings = load_settings(config, {"workspace": workspace, "capture": {"engine": engine, "tenants": tenants}})
    ws = settings.workspace
    sources: list[str | Path] = list(inputs or [])
    if iface is not None:
        from netsentry.pipeline.capture.live import capture_live, check_stop_condition

        check_stop_condition(duration, count)
        spool = ws / "spool" / time.strftime("live-%Y%m%dT%H%M%S")
        err.print(f"capturing on {iface} into {spool} …", highlight=False)
        sources += capture_live(
            iface, spool, duration=duration, count=count, ring_file_mb=ring_mb, ring_files=ring_files, bpf=bpf
        )
    opts = capture_options(settings, capture_point=capture_point, force=force)
    with progress_bar("capture") as advance:
        summary = run_capture(sources, ws, opts, on_progress=advance)
    for line in summary.problems():
        err.print(f"[yellow]warning:[/] {line}", highlight=False, soft_wrap=True)
    render.print_capture(summary)


@app.command()
@fail_cleanly
def flows(
    workspace: WorkspaceOpt = None,
    config: ConfigOpt = None,
    idle_timeout: Annotated[
        float | None, typer.Option(help="Seconds without packets after which a flow ends [default: 120].")
    ] = None,
    active_timeout: Annotated[
        float | None, typer.Option(help="Longest a flow may last before it is cut [default: 1800].")
    ] = None,
    force: ForceOpt = False,
) -> None:
    """Assemble WORKSPACE/packets into bidirectional flows (WORKSPACE/flows).

    Columns follow NFStream's naming (src2dst_/dst2src_/bidirectional_ + statistic + unit), plus a
    Zeek-like conn_state, handshake RTT and Wireshark-compatible retransmission / dup-ACK counts.
    """
    from netsentry.pipeline.core.config import load_settings
    from netsentry.pipeline.core.progress import progress_bar
    from netsentry.pipeline.core.stage_options import flow_config
    from netsentry.pipeline.flows.stage import run_flows

    settings = load_settings(
        config,
        {"workspace": workspace, "flows": {"idle_timeout_s": idle_timeout, "active_timeout_s": active_timeout}},
    )
    fc = flow_config(settings)
    with progress_bar("flows", unit="items") as advance:
        summary = run_flows(
            settings.workspace, fc, batch_packets=settings.flows.batch_packets, force=force, on_progress=advance
        )
    render.print_flows(summary)


@app.command()
@fail_cleanly
def simulate(
    scenario: Annotated[Path, typer.Option("--scenario", "-s", help="Scenario YAML (see configs/scenarios/).")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Directory for the pcaps, tenants.yaml, labels.csv.")],
    seed: Annotated[
        int | None, typer.Option(help="Random seed [default: the scenario's]; same seed, same bytes.")
    ] = None,
    duration: Annotated[float | None, typer.Option(help="Seconds of traffic [default: the scenario's].")] = None,
    snaplen: Annotated[
        int,
        typer.Option(
            help="Bytes kept per packet in the pcaps (0: whole frames); a DNS message is never cut before the end "
            "of its question (as a tap's port-53 filter with a larger snap length keeps it)."
        ),
    ] = 0,
) -> None:
    """Simulate a multi-tenant cloud and write labelled captures.

    Writes one pcap per capture point, the tenant map (tenants.yaml, for `capture --tenants`) and
    the ground truth (labels.csv). The same scenario and seed give the same bytes.
    """
    from netsentry.pipeline.simulate.scenario import load_scenario
    from netsentry.pipeline.simulate.stage import simulate as run_simulation
    from netsentry.pipeline.simulate.stage import write_outputs

    sc = load_scenario(scenario, duration_s=duration, seed=seed)
    started = time.perf_counter()
    try:
        res = run_simulation(sc)
    except ConfigError as e:
        raise ConfigError(str(e), path=str(scenario)) from None
    counts = write_outputs(res, out_dir, snaplen=snaplen)
    seconds = time.perf_counter() - started
    render.print_simulation(sc, res, counts, out_dir, seconds)


@app.command()
@fail_cleanly
def lab(
    scenario: Annotated[Path, typer.Option("--scenario", "-s", help="Lab scenario YAML (see configs/lab/).")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Directory for the pcaps, tenants.yaml, labels.csv.")],
    scale: Annotated[
        float, typer.Option(help="Stretch the timeline (durations and start times) by this factor.")
    ] = 1.0,
) -> None:
    """Run a scenario in an emulated cloud with real kernels, servers and attack tools (Linux, root).

    Builds the scenario's tenants, hosts, gateway and internet hosts as network namespaces, runs real HTTP
    servers and clients, nmap/hping3 attacks and kernel faults (nftables drops, tbf bottlenecks, links down,
    gateway route or filter changes) on its timeline, captures with tcpdump, and writes the same outputs as
    `simulate`: one pcap per capture point, tenants.yaml, labels.csv (times measured when the lab acted) and
    _manifest.json with the tools' versions. Everything it made is removed on exit, Ctrl-C or SIGTERM.
    """
    from netsentry.pipeline.core.progress import progress_bar
    from netsentry.pipeline.lab.scenario import load_lab_scenario
    from netsentry.pipeline.lab.stage import run_lab

    sc = load_lab_scenario(scenario).scaled(scale)

    with progress_bar(f"lab {sc.name}", unit="items") as advance:

        def report(seconds: float, message: str) -> None:
            advance(int(seconds), int(sc.duration_s))
            if message:
                err.print(f"  {seconds:6.1f} s  {message}", highlight=False)

        res = run_lab(sc, out_dir, progress=report)
    render.print_lab(sc, res)


@app.command()
@fail_cleanly
def features(
    workspace: WorkspaceOpt = None,
    config: ConfigOpt = None,
    labels: Annotated[
        Path | None, typer.Option(help="Ground truth (labels.csv as `simulate` writes) joined by scope and time.")
    ] = None,
    window: Annotated[str | None, typer.Option(help="Tenant-window length, e.g. 60s or 1m [default: 60s].")] = None,
    hop: Annotated[str | None, typer.Option(help="A tenant window starts every HOP [default: 10s].")] = None,
    fault_window: Annotated[str | None, typer.Option(help="Fault-window length [default: 1s].")] = None,
    force: ForceOpt = False,
) -> None:
    """Build model-ready tables: WORKSPACE/features/tenant_windows (per VM and window: compromise) and
    WORKSPACE/features/fault_windows (per host, host pair, VM and capture point and window: faults).

    Every feature, its meaning and unit: docs/features.md.
    """
    from netsentry.pipeline.core.config import load_settings
    from netsentry.pipeline.core.progress import progress_bar
    from netsentry.pipeline.core.stage_options import window_spec
    from netsentry.pipeline.features.stage import run_features

    settings = load_settings(
        config,
        {
            "workspace": workspace,
            "features": {
                "window_s": parse_duration_s(window, "--window"), "hop_s": parse_duration_s(hop, "--hop"),
                "fault_window_s": parse_duration_s(fault_window, "--fault-window"), "labels": labels,
            },
        },
    )  # fmt: skip
    fs = settings.features
    spec = window_spec(settings)
    with progress_bar("features", unit="packets") as advance:
        summary = run_features(
            settings.workspace, labels=fs.labels, spec=spec, fault_window_s=fs.fault_window_s, force=force,
            on_progress=advance,
        )  # fmt: skip
    render.print_features(summary)


@app.command()
@fail_cleanly
def train(
    workspace: WorkspaceOpt = None,
    config: ConfigOpt = None,
    kind: Annotated[str, typer.Option(help="compromise (tenant windows) or faults (fault windows).")] = "compromise",
    model: Annotated[
        str | None, typer.Option(help="auto (boosted with labels, else autoencoder), iforest, autoencoder or boosted.")
    ] = None,
    tracking_uri: TrackingUriOpt = None,
    target_fpr: Annotated[
        float | None, typer.Option(help="False-positive rate the threshold is calibrated to [default: 0.01].")
    ] = None,
    test_fraction: Annotated[
        float | None, typer.Option(help="With labels: latest share of the time span used as test [default: 0.4].")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed (same seed, same model) [default: 0].")] = None,
    device: Annotated[str | None, typer.Option(help="Autoencoder device: cpu, cuda or auto [default: cpu].")] = None,
    cicflowmeter_csv: Annotated[
        list[Path] | None,
        typer.Option(
            "--cicflowmeter-csv",
            help="Instead: cross-validate on CICFlowMeter CSVs (files or directories; repeatable), e.g. CICIDS2017.",
        ),
    ] = None,
    folds: Annotated[int, typer.Option(help="--cicflowmeter-csv: cross-validation folds.")] = 5,
) -> None:
    """Train a detector on the workspace's feature windows, evaluate it, and register it in MLflow.

    With labels (features --labels): time-based split, metrics (ROC-AUC, PR-AUC, precision, recall, F1 and FPR
    at the threshold, recall per scenario) and plots are logged; the model becomes a new version of
    netsentry-compromise / netsentry-faults with alias challenger (and champion when there is none yet).
    """
    from netsentry.pipeline.core.config import load_settings

    settings = load_settings(
        config,
        {
            "workspace": workspace,
            "train": {
                "model": model, "target_fpr": target_fpr, "test_fraction": test_fraction, "seed": seed,
                "device": device, "tracking_uri": tracking_uri,
            },
        },
    )  # fmt: skip
    ts = settings.train
    if cicflowmeter_csv:
        _train_cicflowmeter(settings.workspace, cicflowmeter_csv, folds, ts.seed, ts.tracking_uri)
        return
    from netsentry.pipeline.core.stage_options import train_options
    from netsentry.pipeline.train.stage import run_train

    options = train_options(settings, kind)
    with err.status(f"training the {kind} detector"):
        res = run_train(settings.workspace, options, tracking_uri=ts.tracking_uri)
    render.print_training(res, options.target_fpr)


def _train_cicflowmeter(workspace: Path, paths: list[Path], folds: int, seed: int, uri: str | None) -> None:
    from netsentry.pipeline.core import tracking
    from netsentry.pipeline.train.cicflowmeter import cross_validate_cicids, format_cv_report, read_cicflowmeter_csv

    files: list[Path] = []
    for p in paths:
        files.extend(sorted(p.glob("*.csv")) if p.is_dir() else [p])
    data = read_cicflowmeter_csv(files)
    with err.status(f"{folds}-fold cross-validation on {len(data.y):,} flows"):
        res = cross_validate_cicids(data, folds=folds, seed=seed)
    out.print(format_cv_report(res), highlight=False)
    tracker = tracking.Tracker(workspace, uri)
    with tracker.run("cicflowmeter", "cicflowmeter-cv") as run:
        tracking.log_params({"folds": folds, "seed": seed, "files": ",".join(str(p) for p in paths),
                             "rows": len(data.y)})  # fmt: skip
        tracking.log_metrics(res.metrics())
    out.print(f"macro-F1 {res.macro_f1_mean:.4f} ± {res.macro_f1_std:.4f}; run {run.info.run_id} in {tracker.uri}",
              highlight=False)  # fmt: skip


@app.command()
@fail_cleanly
def inspect(
    workspace: WorkspaceOpt = None,
    config: ConfigOpt = None,
    compromise_model: Annotated[
        str | None, typer.Option(help="Model URI [default: models:/netsentry-compromise@champion].")
    ] = None,
    fault_model: Annotated[
        str | None, typer.Option(help="Model URI [default: models:/netsentry-faults@champion].")
    ] = None,
    threshold_scale: Annotated[
        float | None,
        typer.Option(
            help="Scale the models' false-positive rate down by X (2: thresholds where half as many benign "
            "windows pass; fewer, surer findings) [default: 1]."
        ),
    ] = None,
    tracking_uri: TrackingUriOpt = None,
    pseudonymize: Annotated[
        bool | None,
        typer.Option(
            "--pseudonymize/--no-pseudonymize",
            help="Render every IP address in findings and report as a stable keyed pseudonym.",
        ),
    ] = None,
    pseudonym_key: Annotated[
        Path | None, typer.Option(help="Pseudonym key file (>= 16 bytes) [default: $NETSENTRY_PSEUDONYM_KEY].")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the findings as JSON (for scripts).")] = False,
    fail_on: FailOnOpt = None,
    force: ForceOpt = False,
) -> None:
    """Score the workspace's feature windows with the registered champions and report what they find.

    Writes WORKSPACE/findings/ (findings.parquet, findings.json) and WORKSPACE/report.html, and logs an
    inspection run (findings and report as artifacts) in the netsentry-inspections experiment. Compromise
    findings are per VM (or address) with evidence; fault findings are incidents (flagged windows merged,
    related scopes clustered) with a type and magnitude. Exit code 3 when a finding is at or above --fail-on
    (default medium), else 0; lower findings are still written and counted.
    """
    from netsentry.pipeline.core.config import load_settings
    from netsentry.pipeline.core.stage_options import inspect_options
    from netsentry.pipeline.inspect import run_inspect
    from netsentry.pipeline.inspect.stage import at_or_above

    settings = load_settings(config, {
        "workspace": workspace, "train": {"tracking_uri": tracking_uri},
        "inspect": {"compromise_model": compromise_model, "fault_model": fault_model,
                    "threshold_scale": threshold_scale, "pseudonymize": pseudonymize,
                    "pseudonym_key_file": pseudonym_key, "fail_on": checked_fail_on(fail_on)},
    })  # fmt: skip
    with err.status("inspecting"):
        result = run_inspect(
            settings.workspace, inspect_options(settings, force), tracking_uri=settings.train.tracking_uri
        )
    if as_json:
        from netsentry.pipeline.inspect.findings import findings_document

        meta = {"report": str(result.report), "run_id": result.run_id, "fail_on": settings.inspect.fail_on,
                "not_judged": result.not_judged}  # fmt: skip
        sys.stdout.write(findings_document(result.findings, meta))
    else:
        render.print_findings(result, settings.inspect.fail_on)
    if at_or_above(result.findings, settings.inspect.fail_on):
        raise typer.Exit(3)


@app.command()
@fail_cleanly
def run(
    inputs: Annotated[
        list[str] | None,
        typer.Argument(help="Captures (files, directories, globs) [default: run.inputs of the config]."),
    ] = None,
    workspace: WorkspaceOpt = None,
    config: ConfigOpt = None,
    tenants: Annotated[Path | None, typer.Option(help="Tenant map YAML (capture.tenants).")] = None,
    labels: Annotated[
        Path | None, typer.Option(help="Ground truth labels.csv (features.labels); with labels, train runs.")
    ] = None,
    tracking_uri: TrackingUriOpt = None,
    train: Annotated[
        str | None, typer.Option(help="auto (train when labels are given), always or never [default: auto].")
    ] = None,
    do_inspect: Annotated[
        bool | None, typer.Option("--inspect/--no-inspect", help="Finish with inspect [default: yes].")
    ] = None,
    pseudonymize: Annotated[
        bool | None,
        typer.Option("--pseudonymize/--no-pseudonymize", help="Pseudonymize addresses in findings and report."),
    ] = None,
    fail_on: FailOnOpt = None,
    force: ForceOpt = False,
) -> None:
    """Run every stage in order: capture → flows → features → train (each kind, when labels are given) →
    inspect. A stage whose inputs and config are unchanged (per the workspace manifests) is skipped.

    Settings come from configs/default.yaml, then --config, then these flags. Exit code 3 when the
    inspection reports a finding at or above --fail-on (default medium), as `netsentry inspect`.
    """
    from netsentry.pipeline.core.config import load_settings
    from netsentry.pipeline.inspect.stage import at_or_above
    from netsentry.pipeline.runner import run_pipeline

    settings = load_settings(config, {
        "workspace": workspace, "capture": {"tenants": tenants}, "features": {"labels": labels},
        "train": {"tracking_uri": tracking_uri},
        "inspect": {"pseudonymize": pseudonymize, "fail_on": checked_fail_on(fail_on)},
        "run": {"train": train, "inspect": do_inspect},
    })  # fmt: skip
    started = time.perf_counter()
    with err.status("starting") as status:
        report = run_pipeline(settings, inputs or [], force=force,
                              on_stage=lambda stage: status.update(f"{stage} …"))  # fmt: skip
    render.print_run(settings.workspace, report, time.perf_counter() - started)
    result = report.inspect
    if result is not None:
        render.print_findings(result, settings.inspect.fail_on)
        if at_or_above(result.findings, settings.inspect.fail_on):
            raise typer.Exit(3)


@app.command()
@fail_cleanly
def ui(
    workspace: WorkspaceOpt = None,
    config: ConfigOpt = None,
    port: Annotated[int, typer.Option(help="Port to serve on (bound to 127.0.0.1).")] = 5000,
    host: Annotated[
        str, typer.Option(help="Address to bind; anything but loopback exposes the UI to the network.")
    ] = "127.0.0.1",
    tracking_uri: TrackingUriOpt = None,
) -> None:
    """Start the MLflow UI on the tracking store training and inspection use (until Ctrl-C).

    One worker and no job runner: two processes and about 0.5 GB, not MLflow's default 15 processes and 3 GB.
    When the tracking store already is an MLflow server, there is nothing to start: open its URL.
    """
    from netsentry.pipeline.core.config import load_settings
    from netsentry.pipeline.core.tracking import resolve_tracking_uri
    from netsentry.pipeline.ui import remote_ui_url, serve_forever

    settings = load_settings(config, {"workspace": workspace, "train": {"tracking_uri": tracking_uri}})
    uri = resolve_tracking_uri(settings.train.tracking_uri, settings.workspace)
    remote = remote_ui_url(uri)
    if remote:
        out.print(f"the tracking store is an MLflow server: open {remote}", highlight=False)
        return

    def ready(server: Any) -> None:
        out.print(f"MLflow UI for {uri} at {server.url} (Ctrl-C stops it)", highlight=False)

    serve_forever(uri, settings.workspace, host, port, on_ready=ready)


@app.command()
@fail_cleanly
def export(
    table: Annotated[
        str,
        typer.Argument(help="packets, flows, tcp_events, tenant_windows, fault_windows or findings."),
    ],
    out_file: Annotated[Path, typer.Option("--out", "-o", help="File to write (replaced atomically).")],
    workspace: WorkspaceOpt = None,
    config: ConfigOpt = None,
    fmt: Annotated[str, typer.Option("--format", help="parquet (schema kept) or csv (addresses as text).")] = "parquet",
    pseudonymize: Annotated[
        bool, typer.Option("--pseudonymize/--no-pseudonymize", help="Every IP address as a stable keyed pseudonym.")
    ] = False,
    pseudonym_key: Annotated[
        Path | None, typer.Option(help="Pseudonym key file (>= 16 bytes) [default: $NETSENTRY_PSEUDONYM_KEY].")
    ] = None,
) -> None:
    """Export a workspace table to share it, with IP addresses pseudonymized on request (prefix-preserving:
    a /24 stays a /24; the same key gives the same pseudonyms as inspect --pseudonymize)."""
    from netsentry.pipeline.core.config import load_settings
    from netsentry.pipeline.core.progress import progress_bar
    from netsentry.pipeline.core.pseudonym import Pseudonymizer, load_key
    from netsentry.pipeline.export.stage import export_table

    settings = load_settings(config, {"workspace": workspace})
    p = Pseudonymizer(load_key(pseudonym_key)) if pseudonymize or pseudonym_key is not None else None
    with progress_bar("export", unit="rows") as advance:
        summary = export_table(settings.workspace, table, out_file, fmt=fmt, pseudonymizer=p, on_progress=advance)
    what = " (addresses pseudonymized)" if summary.pseudonymized else ""
    out.print(f"{summary.rows:,} rows of {table} → {summary.out}{what}", highlight=False)


@app.command()
@fail_cleanly
def retrain(
    config: ConfigOpt = None,
    workspace: WorkspaceOpt = None,
    spool: Annotated[Path | None, typer.Option(help="Directory new captures arrive in (retrain.spool).")] = None,
    tracking_uri: TrackingUriOpt = None,
    every: Annotated[
        str | None,
        typer.Option(help="Loop: run again every INTERVAL (e.g. 1h, 15m) until Ctrl-C, for hosts without cron."),
    ] = None,
) -> None:
    """The scheduled retraining job: captures that arrived in the spool since the last run → capture → flows →
    features → a challenger per kind, compared with the champion on the same held-out latest windows.

    The champion alias moves only when the challenger passes the floors (retrain.floors) and beats the
    champion by retrain.margin on retrain.metric (unlabelled captures: benign false-positive rate and recall of
    retrain.planted cases). Decisions are logged to the netsentry-retrain experiment. A lock keeps two runs
    apart (exit 10); a failure leaves champions and the watermark untouched; no new captures: nothing to do.
    Schedule it with cron or systemd (configs/schedule/) or --every.
    """
    from netsentry.pipeline.core.config import load_settings

    settings = load_settings(config, {"workspace": workspace, "train": {"tracking_uri": tracking_uri},
                                      "retrain": {"spool": spool}})  # fmt: skip
    if every is None:
        _retrain_once(settings)
        return
    interval = parse_duration_s(every, "--every") or 0.0
    if interval <= 0:
        raise ConfigError(f"--every must be a positive interval like 1h or 15m, got {every!r}")
    while True:
        started = time.monotonic()
        try:
            _retrain_once(settings)
        except NetsentryError as e:  # one failed run must not end the loop; the next one retries
            err.print(f"[bold red]error:[/] {e} (exit code {e.exit_code}); next run in {every}", highlight=False)
        time.sleep(max(0.0, interval - (time.monotonic() - started)))


def _retrain_once(settings: Any) -> None:
    from netsentry.pipeline.retrain.stage import run_retrain

    with err.status("retraining") as status:
        res = run_retrain(settings, on_step=lambda step: status.update(f"retrain: {step} …"))
    render.print_retrain(res, settings.retrain.spool)


app.add_typer(models_app, name="models")


def main() -> None:
    """Console-script entry point."""
    # Transparent huge pages make the first large allocations of a short-lived process slow
    # (measured: flows 2.1-2.6 s vs 1.1 s warm on 1M packets). Set before numpy is imported.
    os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")
    app()
