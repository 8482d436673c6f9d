"""report.html: escaping, MLflow links, no external resources, determinism, timelines, and a real headless Chromium
that must render the findings with no console error and no network request (proved able to fail on a canary page)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, ClassVar

import pytest

from netsentry.pipeline.inspect.findings import Finding
from netsentry.pipeline.report import fmt, render_report
from netsentry.pipeline.report.svg import downsample, segments, timeline_svg, windows_from_timeline

S = 1_000_000_000
T0 = 1_714_564_800 * S  # 2024-05-01 12:00:00 UTC
UI = "http://127.0.0.1:5000"
HOSTILE_SCOPE = "<script>alert(1)</script>"
HOSTILE = [
    HOSTILE_SCOPE,
    '"><img src=x onerror=alert(2)>',
    "</td></tr><script>alert(3)</script>",
    "<svg onload=alert(4)>",
    "<iframe src=javascript:alert(5)>",
    '" onmouseover="alert(6)',
    "</title><script>alert(7)</script>",
]


def tenant_timeline(flagged: range, n: int = 60) -> list[dict[str, Any]]:
    """60 s windows every 10 s (tenant_windows' sliding layout); high scores in ``flagged``."""
    return [{"start_ns": T0 + i * 10 * S, "end_ns": T0 + i * 10 * S + 60 * S,
             "score": 0.82 + (i % 7) / 50 if i in flagged else 0.03 + (i % 5) / 100, "flag": i in flagged}
            for i in range(n)]  # fmt: skip


def fault_timeline(flagged: range, n: int = 300, peak: float = 0.9) -> list[dict[str, Any]]:
    """Tumbling 1 s windows; high scores in ``flagged``."""
    return [{"start_ns": T0 + i * S, "end_ns": T0 + (i + 1) * S,
             "score": peak - (i % 3) / 100 if i in flagged else 0.05 + (i % 11) / 200, "flag": i in flagged}
            for i in range(n)]  # fmt: skip


def brute_force() -> Finding:
    """A compromised VM with full evidence (SSH brute force from acme-web-1)."""
    return Finding(
        finding_id="cmp-acme-web-1-0", kind="compromise", type="compromise", scope_type="vm",
        scope="acme/acme-web-1", tenant="acme", vm="acme-web-1", ip="10.0.1.5", capture_point="vm.pcap",
        start_ns=T0 + 300 * S, end_ns=T0 + 500 * S, windows=15, score=0.94, threshold=0.5, severity="high",
        model_uri="models:/netsentry-compromise@champion", model_version="3",
        summary="acme/acme-web-1 (10.0.1.5) opened 240 failed SSH connections a minute to 203.0.113.7, "
                "120x its baseline: SSH brute force",
        evidence={
            "summary_features": [
                {"name": "failed_out_per_min", "meaning": "outgoing TCP flows with a failed handshake (per minute)",
                 "value": 240.0, "baseline": 2.0, "peers": 1.5, "vs_baseline": 120.0, "vs_peers": 160.0},
                {"name": "sensitive_share_out", "meaning": "outgoing flows to sensitive ports / outgoing flows (ratio)",
                 "value": 0.973, "baseline": 0.05, "peers": 0.02, "vs_baseline": 19.46, "vs_peers": 48.65},
                {"name": "bytes_sent_per_s", "meaning": "bytes the entity sent (bytes/s)",
                 "value": 3_400_000.0, "baseline": 12_000.0, "peers": 9_000.0, "vs_baseline": 283.3, "vs_peers": None},
            ],
            "counts": {"flows": 14_234, "failed_handshakes": 13_980, "distinct_remotes": 1},
            "remotes": [{"ip": "203.0.113.7", "flows": 14_000, "packets": 42_000, "bytes": 3_400_000, "ports": [22]}],
            "ports": [{"port": 22, "proto": "tcp", "flows": 14_000, "failed": 13_900}],
            "timeline": tenant_timeline(range(30, 45)),
        },
    )  # fmt: skip


def loss_incident() -> Finding:
    """A loss burst between two hosts."""
    return Finding(
        finding_id="flt-host2-host3-0", kind="fault", type="loss", scope_type="host_pair", scope="host2-host3",
        tenant="", vm="", ip="", capture_point="", start_ns=T0 + 100 * S, end_ns=T0 + 113 * S, windows=13,
        score=0.91, threshold=0.6, severity="high", model_uri="models:/netsentry-faults@champion", model_version="7",
        summary="host2-host3 lost packets for 13 s from 12:01:40: retransmission rate 12.5 %, 38x its baseline",
        evidence={
            "summary_features": [{"name": "retransmission_rate", "value": 0.125, "baseline": 0.0033, "peers": 0.004,
                                  "vs_baseline": 38.0, "vs_peers": 31.0}],
            "magnitude": {"retransmission_rate": 0.125, "lost_segments": 1_204, "handshake_rtt_p99_ms": 1250.0},
            "counts": {"retransmissions": 5_310, "dup_acks": 12_045},
            "timeline": fault_timeline(range(100, 113)),
        },
    )  # fmt: skip


def latency_incident() -> Finding:
    """A latency spike at the gateway."""
    return Finding(
        finding_id="flt-gateway-0", kind="fault", type="latency", scope_type="host", scope="gateway", tenant="",
        vm="", ip="", capture_point="gateway.pcap", start_ns=T0 + 200 * S, end_ns=T0 + 231 * S, windows=31,
        score=0.71, threshold=0.6, severity="medium", model_uri="models:/netsentry-faults@champion",
        model_version="7", summary="gateway: handshake RTT p99 8.1x its baseline for 31 s",
        evidence={"magnitude": {"handshake_rtt_ratio": 8.1, "handshake_rtt_p99_ms": 42.1},
                  "timeline": fault_timeline(range(200, 231), peak=0.72)},
    )  # fmt: skip


def hostile() -> Finding:
    """A finding whose capture-derived text tries to inject markup."""
    ev = {
        "summary_features": [{"name": HOSTILE[4], "meaning": HOSTILE[1], "value": 5, "baseline": 1, "peers": 1,
                              "vs_baseline": 5, "vs_peers": 5}],
        "counts": {HOSTILE[5]: 3},
        "remotes": [{"ip": HOSTILE[3], "flows": 3, "packets": 9, "bytes": 900, "ports": [HOSTILE[2]]}],
        "ports": [{"port": HOSTILE[0], "proto": HOSTILE[3], "flows": 3, "failed": 1}],
        "timeline": tenant_timeline(range(10, 12), n=20),
    }  # fmt: skip
    return Finding(
        finding_id=HOSTILE[1], kind="compromise", type="compromise", scope_type=HOSTILE[5], scope=HOSTILE_SCOPE,
        tenant=HOSTILE[6], vm=HOSTILE[4], ip=HOSTILE[1], capture_point=HOSTILE[3], start_ns=T0 + 100 * S,
        end_ns=T0 + 170 * S, windows=2, score=0.99, threshold=0.5, severity="medium", model_uri=HOSTILE[2],
        model_version=HOSTILE[0], summary=HOSTILE[2], evidence=ev,
    )  # fmt: skip


def findings() -> list[Finding]:
    return [brute_force(), loss_incident(), latency_incident()]


def meta(**over: Any) -> dict[str, Any]:
    m = {
        "generated_at": "2024-05-01T13:00:00+00:00", "workspace": "workspace/demo",
        "capture_start_ns": T0, "capture_end_ns": T0 + 650 * S, "packets": 5_012_345, "flows": 48_210,
        "tenant_windows": 1_260, "fault_windows": 7_800,
        "models": {
            "compromise": {"uri": "models:/netsentry-compromise@champion", "version": "3", "run_id": "abc123",
                           "threshold": 0.5, "experiment_id": "1"},
            "faults": {"uri": "models:/netsentry-faults@champion", "version": "7", "run_id": "def456",
                       "threshold": 0.6, "experiment_id": "2"},
        },
        "inspection_run_id": "insp789", "inspection_experiment_id": "3",
        "tracking_uri": "sqlite:///workspace/demo/mlflow.db", "threshold_scale": 1.0,
    }  # fmt: skip
    return m | over


class Tree(HTMLParser):
    """Tags, attributes, script bodies and text of a page; checks that non-void elements nest properly."""

    VOID: ClassVar[set[str]] = {"meta", "br", "hr", "img", "input", "link", "col", "wbr", "area", "base", "source"}

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[str] = []
        self.text: list[str] = []
        self.errors: list[str] = []
        self._stack: list[str] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag not in self.VOID:
            self._stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        if not self._stack or self._stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self._stack[-1:]}")
        else:
            self._stack.pop()

    def handle_data(self, data: str) -> None:
        if self._stack and self._stack[-1] == "script":
            self.scripts.append(data)
        else:
            self.text.append(data)

    def attr(self, name: str) -> list[str]:
        return [a[name] or "" for _, a in self.tags if name in a]

    def all_text(self) -> str:
        return " ".join(self.text)


# ---------------------------------------------------------------- the HTML


def test_page_is_well_formed_and_carries_the_findings() -> None:
    page = render_report(findings(), meta())
    tree = Tree(page)
    assert tree.errors == []
    text = tree.all_text()
    for f in findings():
        assert f.scope in text and f.summary in text
    assert "2024-05-01 12:00:00 – 2024-05-01 12:10:50 UTC (10 min 50 s)" in text  # capture span
    assert "5,012,345" in text and "48,210" in text
    # counts by kind and severity: compromise 1 high; faults 1 high + 1 medium
    counts = page.split('<table class="counts">')[1].split("</table>")[0]
    assert re.sub(r"<[^>]+>", " ", counts).split() == [
        "Kind", "high", "medium", "low", "Total",
        "Compromised", "VMs", "/", "addresses", "1", "0", "0", "1",
        "Network", "faults", "1", "1", "0", "2",
    ]  # fmt: skip
    headlines = page.split('class="headlines"')[1].split("</ul>")[0]
    assert brute_force().summary in headlines and loss_incident().summary in headlines
    assert latency_incident().summary not in headlines  # medium: no headline
    # evidence formatted for people: x-fold, %, thousands, bytes, ms
    for snippet in ("240/min", "120×", "97.3 %", "3.4 MB/s", "14,234", "13,900 (99.3 %)", "12.5 %", "1.25 s",
                    "8.1×", "42 ms", "203.0.113.7", "0.94 / 0.5 (1.9×)"):  # fmt: skip
        assert snippet in text, snippet
    # one timeline per flagged scope: 60 tenant windows, 300 fault windows each, UTC axis labels
    svgs = re.findall(r"<svg .*?</svg>", page, flags=re.S)
    assert len(svgs) == 3
    assert "60 windows" in text and text.count("300 windows") == 2
    assert all(re.search(r">12:0\d:\d0</text>", s) for s in svgs)
    assert all('stroke-dasharray="5 4"' in s and 'class="tl-flag"' in s for s in svgs)


def test_untrusted_text_is_escaped() -> None:
    page = render_report([*findings(), hostile()], meta(workspace=HOSTILE[6], generated_at=HOSTILE[0]))
    for bad in HOSTILE:
        assert bad not in page, bad
    tree = Tree(page)
    assert tree.errors == []
    assert [t for t, _ in tree.tags].count("script") == 1  # only the report's own
    assert not [(t, k) for t, a in tree.tags for k in a if k.startswith("on")], "event handler attribute"
    assert not {"img", "iframe", "object", "embed", "link"} & {t for t, _ in tree.tags}
    text = tree.all_text()
    for bad in HOSTILE:  # shown to the operator as text
        assert bad in text, bad


def test_mlflow_links_when_the_ui_url_is_known() -> None:
    page = render_report(findings(), meta(mlflow_ui_url=UI + "/"))
    hrefs = set(Tree(page).attr("href"))
    expected = {
        f"{UI}/#/experiments/1/runs/abc123", f"{UI}/#/experiments/2/runs/def456", f"{UI}/#/experiments/3/runs/insp789",
        f"{UI}/#/models/netsentry-compromise/versions/3", f"{UI}/#/models/netsentry-faults/versions/7",
    }  # fmt: skip
    assert expected <= hrefs
    assert {h for h in hrefs if not h.startswith("#")} == expected
    assert "netsentry ui -w" not in page


def test_without_ui_url_run_ids_and_tracking_uri_are_text() -> None:
    page = render_report(findings(), meta())
    text = Tree(page).all_text()
    for run in ("abc123", "def456", "insp789"):
        assert run in text
    assert "sqlite:///workspace/demo/mlflow.db" in text and "netsentry ui -w workspace/demo" in text
    assert not re.search('https?://|<a href="[^#]', page)
    assert not re.search("https?://|javascript:", render_report(findings(), meta(mlflow_ui_url="javascript:alert(1)")))


def test_no_external_resources() -> None:
    page = render_report([*findings(), hostile()], meta(mlflow_ui_url=UI))
    tree = Tree(page)
    assert not tree.attr("src") and not tree.attr("srcset") and not tree.attr("xlink:href")
    assert all(h.startswith(("#", UI + "/#/")) for h in tree.attr("href"))
    assert set(re.findall(r"https?://[^\s\"'<>]*", page)) <= set(tree.attr("href"))
    style = page.split("<style>")[1].split("</style>")[0]
    assert "url(" not in style and "@import" not in style and "@font-face" not in style
    csp = next(a["content"] for t, a in tree.tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy")
    assert csp and csp.startswith("default-src 'none';")


def test_output_is_deterministic() -> None:
    fs = [*findings(), hostile()]
    a = render_report(fs, meta(mlflow_ui_url=UI))
    assert a == render_report(fs, meta(mlflow_ui_url=UI))
    assert a == render_report(list(reversed(fs)), meta(mlflow_ui_url=UI))


def test_nothing_flagged_and_missing_meta() -> None:
    page = render_report([], meta())
    tree = Tree(page)
    assert tree.errors == [] and "Nothing flagged." in tree.all_text()
    assert "over 1,260 tenant windows and 7,800 fault windows" in tree.all_text()
    assert 'class="findings' not in page and "<svg" not in page
    bare = render_report([], {})
    assert "Nothing flagged." in bare and "not recorded" in bare and "No model information recorded." in bare
    partial = render_report([Finding(**{**brute_force().__dict__, "evidence": {"timeline": "junk"}})], {"models": 3})
    assert "No per-window scores recorded" in partial


def test_pseudonymized_note() -> None:
    assert "Pseudonymized:" in render_report(findings(), meta(pseudonymized=True))
    assert "Pseudonymized:" not in render_report(findings(), meta(pseudonymized=False))
    assert "0.8 × each model" in render_report(findings(), meta(threshold_scale=0.8))


# ---------------------------------------------------------------- timelines and numbers


def test_timeline_downsampling_keeps_peaks_and_stays_fast() -> None:
    n = 20_000
    tl = [{"start_ns": T0 + i * S, "end_ns": T0 + (i + 1) * S, "score": 0.1 + (i % 13) / 1000, "flag": False}
          for i in range(n)]  # fmt: skip
    tl[12_345] = {**tl[12_345], "score": 7.5, "flag": True}  # one flagged spike among 20k windows
    tl.append({"start_ns": "bad", "score": 1})  # malformed entries are dropped
    tl.append({"start_ns": T0, "end_ns": T0 + S, "score": float("nan")})
    segs = downsample(segments(windows_from_timeline(tl)), 600)
    assert len(segs) <= 600
    assert max(s.score for s in segs) == 7.5 and sum(s.flag for s in segs) == 1
    svg = timeline_svg(tl, 0.5, title="x")
    assert svg.count("H") <= 600 and svg.count('class="tl-flag"') == 1 and len(svg) < 40_000
    labels = re.findall(r">(\d\d:\d\d:\d\d)</text>", svg)
    assert 3 <= len(labels) <= 9 and labels[0] == "12:00:00"  # round ticks over 5 h 33 min
    assert timeline_svg([], 0.5) == "" and timeline_svg([{"score": 1}], 0.5) == ""


def test_timeline_gaps_break_the_line() -> None:
    tl = [{"start_ns": T0 + i * S, "end_ns": T0 + (i + 1) * S, "score": 0.2, "flag": False} for i in (0, 1, 2, 10, 11)]
    path = re.search(r'class="tl-score" d="([^"]+)"', timeline_svg(tl, 0.5)).group(1)
    assert path.count("M") == 2


def test_named_values_read_by_their_unit() -> None:
    """The number formatters themselves: tests/core/test_units.py."""
    named = {"failed_ratio_out": (0.97, "97 %"), "flows_out_vs_baseline": (12, "12×"), "burstiness": (3.27, "3.3×"),
             "bytes_sent_per_s": (3.4e6, "3.4 MB/s"), "handshake_rtt_p99_ms": (42.1, "42 ms"),
             "dns_queries_per_min": (30, "30/min"), "retransmission_rate": (0.125, "12.5 %"),
             "lost_segments": (1204, "1,204"), "remote_ip_entropy_out": (3.2, "3.20 bits")}  # fmt: skip
    for name, (value, text) in named.items():
        assert fmt.named(name, value) == text, name


# ---------------------------------------------------------------- a real browser

CHROMIUM = shutil.which("chromium")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium not installed: `make chromium` (as root) or `apt-get install chromium`"
)
CONSOLE = re.compile(r":CONSOLE[(:\]]|Uncaught")


def chromium(page: Path, tmp: Path) -> tuple[str, list[str], list[str]]:
    """Load ``page`` in headless Chromium with every name lookup failing: (DOM after scripts, console lines,
    URLs the page itself requested over the network)."""
    netlog = tmp / f"{page.stem}.netlog.json"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0",
           "--host-resolver-rules=MAP * ~NOTFOUND", "--no-first-run", "--disable-background-networking",
           "--disable-extensions", f"--user-data-dir={tmp / 'profile'}", f"--log-net-log={netlog}",
           "--dump-dom", page.as_uri()]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 0, res.stderr[-2000:]
    console = [line for line in res.stderr.splitlines() if CONSOLE.search(line)]
    return res.stdout, console, page_requests(netlog)


def page_requests(netlog: Path) -> list[str]:
    """Network URLs requested on behalf of a file:// page (Chromium's own background requests left out)."""
    log = json.loads(netlog.read_text())
    start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    return [e["params"]["url"] for e in log["events"]
            if e["type"] == start_job and str(e["params"].get("network_isolation_key", "")).startswith("file://")
            and not e["params"]["url"].startswith("file:")]  # fmt: skip


@needs_chromium
def test_canary_page_shows_the_checks_can_fail(tmp_path: Path) -> None:
    page = tmp_path / "canary.html"
    page.write_text('<html><body><p>canary</p><img src="http://example.invalid/pixel.png">'
                    '<script>console.error("boom"); undefinedFunction();</script></body></html>')  # fmt: skip
    dom, console, requests = chromium(page, tmp_path)
    assert "canary" in dom
    assert any('"boom"' in line for line in console), console
    assert any("Uncaught ReferenceError: undefinedFunction is not defined" in line for line in console), console
    assert requests == ["http://example.invalid/pixel.png"]


PROBE = """(function () {
  var table = document.querySelector("#compromise table.sortable");
  var th = Array.prototype.filter.call(table.tHead.rows[0].cells, function (c) {
    return c.textContent.indexOf("Score") === 0; })[0];
  th.querySelector("button").click();
  var scopes = Array.prototype.map.call(table.tBodies[0].rows, function (r) { return r.cells[1].textContent; });
  document.body.setAttribute("data-probe", scopes.join("|") + "#" + th.getAttribute("aria-sort"));
}());"""


def with_probe(page: str) -> str:
    """The page plus a script that sorts the compromise table by score (allowed by adding its hash to the CSP)."""
    digest = base64.b64encode(hashlib.sha256(PROBE.encode()).digest()).decode()
    page = page.replace("script-src ", f"script-src 'sha256-{digest}' ", 1)
    return page.replace("</body>", f"<script>{PROBE}</script></body>", 1)


@needs_chromium
def test_report_renders_in_chromium_without_errors_or_requests(tmp_path: Path) -> None:
    fs = [*findings(), hostile()]
    report = tmp_path / "report.html"
    report.write_text(with_probe(render_report(fs, meta(pseudonymized=True, mlflow_ui_url=UI))), encoding="utf-8")
    dom, console, requests = chromium(report, tmp_path)
    assert console == [] and requests == []
    tree = Tree(dom)
    text = tree.all_text()
    for f in fs:
        assert f.scope in text and f.summary in text
    assert "Pseudonymized:" in text
    assert len(tree.scripts) == 2  # the report's and the probe; nothing injected
    body = next(a for t, a in tree.tags if t == "body")
    assert body["data-probe"] == f"{HOSTILE_SCOPE}|acme/acme-web-1#descending"  # sorted by score (0.99, 0.94)
    empty = tmp_path / "empty.html"
    empty.write_text(render_report([], {}), encoding="utf-8")
    dom, console, requests = chromium(empty, tmp_path)
    assert "Nothing flagged." in dom and console == [] and requests == []
