"""The CLI end to end: capture → flows on real captures, exit codes, reruns, atomic outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from netsentry.pipeline.capture import stage
from netsentry.pipeline.cli import app
from tests.tshark_conv import DATA

runner = CliRunner()


def run(*args: str) -> tuple[int, str]:
    res = runner.invoke(app, [str(a) for a in args])
    return res.exit_code, res.output


def test_help_lists_the_stages_and_exit_codes() -> None:
    code, out = run("--help")
    assert code == 0
    assert "capture" in out and "flows" in out and "Exit codes" in out
    code, out = run("capture", "-h")
    assert code == 0 and "--iface" in out and "--tenants" in out


def test_capture_then_flows_on_real_captures(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    code, out = run("capture", DATA / "sshguess.pcap", DATA / "ssh-dups.pcap", "-w", ws)
    assert code == 0, out
    assert "sshguess.pcap" in out and "808 packets" in out
    manifest = json.loads((ws / "packets" / "_manifest.json").read_text())
    assert manifest["rows"] == 431 + 377 and len(manifest["inputs"]) == 2
    code, out = run("flows", "-w", ws)
    assert code == 0, out
    assert "166 retransmissions, 114 duplicate ACKs" in out
    assert "192.168.0.102:53206 → 192.168.0.112:22" in out
    flows = pq.read_table(ws / "flows")
    assert flows.num_rows == 12
    assert sorted(flows.column("capture_point").to_pylist()).count("sshguess.pcap") == 11
    # unchanged inputs and config: nothing to do
    code, out = run("flows", "-w", ws)
    assert code == 0 and "up to date" in out
    code, out = run("capture", DATA / "sshguess.pcap", DATA / "ssh-dups.pcap", "-w", ws)
    assert code == 0 and "up to date" in out
    # a different timeout is a different config: rerun
    code, out = run("flows", "-w", ws, "--idle-timeout", "1")
    assert code == 0 and "up to date" not in out


def test_directory_and_glob_inputs(tmp_path: Path) -> None:
    code, out = run("capture", DATA, "-w", tmp_path / "a")
    assert code == 0, out
    assert json.loads((tmp_path / "a" / "packets" / "_manifest.json").read_text())["rows"] > 10_000
    code, out = run("capture", str(DATA / "ssh*.pcap"), "-w", tmp_path / "b")
    assert code == 0, out
    assert len(json.loads((tmp_path / "b" / "packets" / "_manifest.json").read_text())["parts"]) == 2


@pytest.mark.parametrize(
    ("make", "code", "fragment"),
    [
        (lambda d: d / "missing.pcap", 2, "no such file"),
        (lambda d: (d / "empty").mkdir() or d / "empty", 2, "no capture files"),
        (lambda d: (d / "notes.pcap").write_text("hello\n") and d / "notes.pcap", 4, "not a pcap or pcapng"),
        (lambda d: (d / "zero.pcap").write_bytes(b"") or d / "zero.pcap", 4, "empty file"),
    ],
)
def test_bad_inputs_give_one_line_errors(tmp_path: Path, make, code: int, fragment: str) -> None:
    target = make(tmp_path)
    rc, out = run("capture", target, "-w", tmp_path / "ws")
    assert rc == code
    error_lines = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and fragment in error_lines[0] and str(target.name) in error_lines[0]


def test_one_bad_file_among_good_ones_is_a_warning_not_a_failure(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pcap"
    bad.write_text("not a capture")
    code, out = run("capture", DATA / "sshguess.pcap", bad, "-w", tmp_path / "ws")
    assert code == 0
    assert "warning:" in out and "bad.pcap" in out


def test_failed_run_leaves_previous_output_intact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ws = tmp_path / "ws"
    assert run("capture", DATA / "sshguess.pcap", "-w", ws)[0] == 0
    before = [(ws / t / "_manifest.json").read_text() for t in ("packets", "arp", "dns", "stratum")]

    def crash(*_a: object, **_k: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(stage, "_write_parts", crash)
    code, out = run("capture", DATA / "ssh-dups.pcap", "-w", ws)
    assert code == 130 and "interrupted" in out
    assert [(ws / t / "_manifest.json").read_text() for t in ("packets", "arp", "dns", "stratum")] == before
    assert sorted(p.name for p in ws.iterdir()) == ["arp", "dns", "packets", "stratum"]  # no temporary dir left


def test_flows_without_packets_table_says_which_stage_to_run(tmp_path: Path) -> None:
    code, out = run("flows", "-w", tmp_path / "nothing")
    assert code == 2 and "no packets table" in out


def test_bad_config_names_the_field(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("flows:\n  idle_timeout_s: -3\n")
    code, out = run("flows", "-w", tmp_path, "--config", cfg)
    assert code == 2 and "flows.idle_timeout_s" in out and "c.yaml" in out


def test_capture_with_tenant_map_labels_packets_and_flows(tmp_path: Path) -> None:
    tenants = tmp_path / "tenants.yaml"
    tenants.write_text(
        "vpcs:\n"
        "  - id: lab\n    cidr: 192.168.56.0/24\n"
        "    subnets:\n      - cidr: 192.168.56.0/24\n"
        "        ports:\n          - {ip: 192.168.56.103, vm: ssh-server}\n"
    )
    ws = tmp_path / "ws"
    assert run("capture", DATA / "sshguess.pcap", "-w", ws, "--tenants", tenants)[0] == 0
    packets = pq.read_table(ws / "packets")
    assert set(packets.column("tenant").to_pylist()) == {"lab"}
    assert run("flows", "-w", ws)[0] == 0
    flows = pq.read_table(ws / "flows").to_pylist()
    assert {(f["src_tenant"], f["src_vm"], f["dst_tenant"], f["dst_vm"]) for f in flows} == {
        ("lab", "unknown", "lab", "ssh-server")
    }
    assert {(f["tenant"], f["vm"]) for f in flows} == {("lab", "unknown")}


def test_bad_tenant_map_is_a_one_line_error(tmp_path: Path) -> None:
    tenants = tmp_path / "tenants.yaml"
    tenants.write_text("vpcs:\n  - id: x\n    cidr: 10.0.0.0/33\n")
    code, out = run("capture", DATA / "sshguess.pcap", "-w", tmp_path / "ws", "--tenants", tenants)
    assert code == 2 and "vpcs[0].cidr" in out and "tenants.yaml" in out


@pytest.mark.skipif(__import__("shutil").which("tshark") is None, reason="tshark not installed")
def test_pyshark_engine_through_the_cli_gives_the_same_table(tmp_path: Path) -> None:
    assert run("capture", DATA / "ssh-dups.pcap", "-w", tmp_path / "fast")[0] == 0
    code, out = run("capture", DATA / "ssh-dups.pcap", "-w", tmp_path / "slow", "--engine", "pyshark")
    assert code == 0, out
    fast, slow = pq.read_table(tmp_path / "fast" / "packets"), pq.read_table(tmp_path / "slow" / "packets")
    assert slow.num_rows == 377 and slow.equals(fast)


def test_live_capture_needs_a_stop_condition(tmp_path: Path) -> None:
    code, out = run("capture", "--iface", "lo", "-w", tmp_path)
    assert code == 2 and "stop condition" in out and "capturing" not in out
