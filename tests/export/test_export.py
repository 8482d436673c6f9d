"""``netsentry export``: tables leave the workspace whole, and with --pseudonymize without any input address."""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from netsentry.pipeline.cli import app
from netsentry.pipeline.core.schemas import ip16_numpy, ip_text, mac_text
from tests.conftest import ROOT, workspace_of

runner = CliRunner()
KEY = "0123456789abcdef-export-test"


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = ROOT / "tests" / "data"
    return workspace_of([data / "wikipedia.pcap", data / "sshguess.pcap"], tmp_path_factory.mktemp("export") / "ws")


def addresses(ws: Path) -> set[str]:
    t = pq.read_table(ws / "packets", columns=["src_ip", "dst_ip"])
    return set(ip_text(t["src_ip"])) | set(ip_text(t["dst_ip"]))


def test_arp_table_exports_with_macs_as_text(ws: Path, tmp_path: Path) -> None:
    """wikipedia.pcap holds 6 ARP frames: the CSV names their MACs and addresses as text."""
    r = runner.invoke(app, ["export", "arp", "-w", str(ws), "-o", str(tmp_path / "arp.csv"), "--format", "csv"])
    assert r.exit_code == 0, r.output
    t = pacsv.read_csv(tmp_path / "arp.csv")
    original = pq.read_table(ws / "arp")
    assert t.num_rows == original.num_rows == 6
    assert t["sender_mac"].to_pylist() == list(mac_text(original["sender_mac"]))
    assert all(re.fullmatch(r"([0-9a-f]{2}:){5}[0-9a-f]{2}", m) for m in t["src_mac"].to_pylist())
    assert t["sender_ip"].to_pylist() == list(ip_text(original["sender_ip"]))


def test_plain_export_keeps_the_table(ws: Path, tmp_path: Path) -> None:
    r = runner.invoke(app, ["export", "flows", "-w", str(ws), "-o", str(tmp_path / "flows.parquet")])
    assert r.exit_code == 0, r.output
    assert pq.read_table(tmp_path / "flows.parquet").equals(pq.read_table(ws / "flows"))


@pytest.mark.parametrize("table", ["packets", "arp", "flows", "tenant_windows", "fault_windows"])
def test_pseudonymized_exports_hold_no_input_address(
    ws: Path, tmp_path: Path, table: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NETSENTRY_PSEUDONYM_KEY", KEY)
    known = addresses(ws)
    assert "192.168.56.1" in known
    original = pq.read_table(ws / (table if "windows" not in table else f"features/{table}"))
    pq_out, csv_out = tmp_path / f"{table}.parquet", tmp_path / f"{table}.csv"
    for out, fmt in ((pq_out, "parquet"), (csv_out, "csv")):
        r = runner.invoke(app, ["export", table, "-w", str(ws), "-o", str(out), "--format", fmt, "--pseudonymize"])
        assert r.exit_code == 0, r.output
    exported = pq.read_table(pq_out)
    assert exported.schema.equals(original.schema) and exported.num_rows == original.num_rows
    for name in ("src_ip", "dst_ip"):
        if name in original.column_names:
            before = {bytes(r) for r in ip16_numpy(original[name])}
            after = {bytes(r) for r in ip16_numpy(exported[name])}
            assert len(after) == len(before) and not (after & before - {bytes(16)})
    text = csv_out.read_text()
    tokens = set(re.findall(r"(?<![\w.:])[0-9a-fA-F:.]*[.:][0-9a-fA-F:.]*(?![\w])", text))
    assert not (tokens & known), sorted(tokens & known)[:5]
    assert pacsv.read_csv(csv_out).num_rows == original.num_rows


def test_unknown_table_and_missing_key_are_one_line_errors(ws: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("NETSENTRY_PSEUDONYM_KEY", raising=False)
    r = runner.invoke(app, ["export", "nope", "-w", str(ws), "-o", str(tmp_path / "x")])
    assert r.exit_code == 2 and "unknown table 'nope'" in r.output
    r = runner.invoke(app, ["export", "flows", "-w", str(ws), "-o", str(tmp_path / "x"), "--pseudonymize"])
    assert r.exit_code == 2 and "NETSENTRY_PSEUDONYM_KEY" in r.output and not (tmp_path / "x").exists()
    r = runner.invoke(app, ["export", "findings", "-w", str(ws), "-o", str(tmp_path / "x")])
    assert r.exit_code == 2 and "netsentry inspect" in r.output
