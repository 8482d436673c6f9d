"""Simulated DNS against the dns table: tunnels shaped like iodine, dnscat2 and dnstt (one socket, data-carrying
types, long ever-new names under one domain), a VM terminating a tunnel, everyday lookups (mostly A/AAAA, short
dictionary-like names, a few NXDOMAIN and long CDN hashes), and a snap length that never cuts a question."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.dataset as ds
import pytest
import yaml

from netsentry.pipeline.capture.stage import run_capture
from netsentry.pipeline.core import catalog
from netsentry.pipeline.core.schemas import ip_text
from netsentry.pipeline.simulate import dns_payloads as D
from netsentry.pipeline.simulate.stage import simulate_to_dir
from tests.simulate.test_attacks import CLOUD, VICTIM, tshark_problems

needs_tshark = pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
TXT, CNAME, MX, NULL, PRIVATE, A, AAAA = 16, 5, 15, 10, 65399, 1, 28


def simulate_dns(tmp: Path, params: dict[str, Any] | None, benign_rate: float = 0.0, snaplen: int = 128,
                 duration_s: int = 40) -> tuple[Path, dict[str, Any]]:  # fmt: skip
    """One scenario (a dns_tunnel event unless ``params`` is None) written with ``snaplen``; the vm tap's dns rows
    (text addresses) and the simulation result."""
    events = [] if params is None else [{"kind": "compromise", "type": "dns_tunnel", "target": VICTIM, "start_s": 5,
                                         "duration_s": duration_s - 10, "params": params}]  # fmt: skip
    sc = {"name": "dns", "duration_s": duration_s, "seed": 5, "benign_rate": benign_rate, "capture_points": ["vm"],
          "cloud": CLOUD, "events": events}  # fmt: skip
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / "dns.yaml"
    path.write_text(yaml.safe_dump(sc))
    res = simulate_to_dir(path, tmp / "sim", snaplen=snaplen)
    run_capture([tmp / "sim" / "vm.pcap"], tmp / "ws")
    t = ds.dataset(catalog.path(tmp / "ws", catalog.DNS)).to_table()
    cols = {c: t.column(c).to_numpy() for c in t.column_names if c not in ("capture_point", "src_ip", "dst_ip")}
    cols["src"], cols["dst"] = np.asarray(ip_text(t.column("src_ip"))), np.asarray(ip_text(t.column("dst_ip")))
    return tmp / "sim", {"rows": cols, "res": res}


def addr(res: Any, name: str = VICTIM) -> str:
    c = res.cloud
    i = c.index(name)
    return ".".join(str((int(c.ip[i]) >> s) & 0xFF) for s in (24, 16, 8, 0))


def queries_from(rows: dict[str, np.ndarray], src: str) -> dict[str, np.ndarray]:
    keep = (rows["src"] == src) & ~rows["is_response"]
    return {k: v[keep] for k, v in rows.items()}


def test_iodine_session_in_the_dns_table(tmp_path: Path) -> None:
    _, out = simulate_dns(tmp_path, {"tool": "iodine", "qtype": "PRIVATE", "rate": 20})
    q = queries_from(out["rows"], addr(out["res"]))
    assert len(q["qtype"]) > 100
    assert len(np.unique(q["src_port"])) == 1  # one socket for the whole session
    assert (q["qtype"] == PRIVATE).all() and not q["name_len_estimated"].any()  # snap length 128 cut no question
    assert (q["name_len"] >= 60).all() and np.median(q["name_len"]) > 100 and q["name_len"].max() <= 253
    assert len(np.unique(q["domain_hash"])) == 1 and (q["domain_hash"] != 0).all()  # one registered domain
    assert len(np.unique(q["name_hash"])) == len(q["name_hash"])  # every name new
    assert q["label_entropy"].mean() > 5.0 and (q["labels"] >= 4).all()  # base128 data labels
    relay = queries_from(out["rows"], addr(out["res"], "acme-dns-1"))
    assert (relay["qtype"] == PRIVATE).sum() == len(q["qtype"]) and len(np.unique(relay["src_port"])) > 50


def test_dnscat2_and_dnstt_shapes(tmp_path: Path) -> None:
    _, out = simulate_dns(tmp_path / "cat", {"tool": "dnscat2", "rate": 8})
    q = queries_from(out["rows"], addr(out["res"]))
    assert set(np.unique(q["qtype"]).tolist()) == {TXT, CNAME, MX} and len(np.unique(q["src_port"])) == 1
    assert (q["dst"] != addr(out["res"], "acme-dns-1")).all()  # straight to its server, not the VPC resolver
    assert (q["name_len"] >= 60).all() and 3.5 < q["label_entropy"].mean() <= 4.0  # hex labels
    _, out = simulate_dns(tmp_path / "tt", {"tool": "dnstt", "sockets": 2})
    q = queries_from(out["rows"], addr(out["res"]))
    assert (q["qtype"] == TXT).all() and len(np.unique(q["src_port"])) == 2
    assert (q["dst"] == addr(out["res"], "acme-dns-1")).all() and len(np.unique(q["domain_hash"])) == 1
    assert 4.0 < q["label_entropy"].mean() <= 5.0  # base32


def test_tunnel_server_on_a_vm(tmp_path: Path) -> None:
    sim, out = simulate_dns(tmp_path, {"tool": "iodine", "qtype": "NULL", "server": "vm"})
    rows, me = out["rows"], addr(out["res"])
    inbound = (rows["dst"] == me) & ~rows["is_response"]
    assert inbound.sum() > 20 and len(np.unique(rows["src"][inbound])) == 1
    assert (rows["qtype"][inbound] == NULL).all() and (rows["name_len"][inbound] >= 60).all()
    answered = (rows["src"] == me) & rows["is_response"]
    assert answered.sum() == inbound.sum() and not ((rows["src"] == me) & ~rows["is_response"]).any()
    labels = (sim / "labels.csv").read_text()
    assert f"dns_tunnel,vm,{me}," in labels and "server=vm" in labels


def test_benign_lookups(tmp_path: Path) -> None:
    _, out = simulate_dns(tmp_path, None, benign_rate=3.0, duration_s=120)
    rows = out["rows"]
    q = {k: v[~rows["is_response"]] for k, v in rows.items()}
    n = len(q["qtype"])
    assert n > 300  # enough lookups for the shares below
    assert np.isin(q["qtype"], (A, AAAA)).mean() > 0.75 and (q["qtype"] == 65).any()  # some HTTPS too
    assert np.isin(q["qtype"], (TXT, MX, CNAME, NULL)).mean() < 0.05 and not (q["qtype"] >= 65280).any()
    assert 15 <= np.median(q["name_len"]) <= 28 and 2 <= np.median(q["labels"]) <= 5  # PTR/SRV names: 5-6 labels
    assert 0.0 < (q["name_len"] >= 40).mean() < 0.2 and (q["name_len"] > 100).mean() < 0.01  # long ones: a few
    assert q["label_entropy"].mean() < 3.8
    assert len(np.unique(q["domain_hash"])) > 30  # many domains ...
    _, counts = np.unique(q["domain_hash"], return_counts=True)
    assert counts.max() / n > 0.05  # ... with a popular head (Zipf)
    r = rows["rcode"][rows["is_response"]]
    assert 0.005 < (r == 3).mean() < 0.08


def test_messages_are_exact_and_whole() -> None:
    for app in (4, *D.TUNNEL_APPS):
        for size in range(120, 1400, 37):
            for direction in (0, 1):
                m = D.dns_message(app, direction, size, 2)
                assert m is not None and len(m) == size, (app, size, direction)
                assert D.question_end(m) > 12
    m = D.dns_message(D.APP_DNS_DNSCAT2, 0, 150, 0)
    assert m is not None and m[12:19] == b"\x06dnscat"


@needs_tshark
@pytest.mark.parametrize("tool", ["iodine", "dnscat2", "dnstt"])
def test_tunnel_pcaps_parse_with_good_checksums(tmp_path: Path, tool: str) -> None:
    sim, _ = simulate_dns(tmp_path, {"tool": tool}, benign_rate=1.0, snaplen=0, duration_s=20)
    assert tshark_problems(sim / "vm.pcap") == 0
    bad = subprocess.run(["tshark", "-r", str(sim / "vm.pcap"), "-o", "udp.check_checksum:TRUE", "-Y",
                          "udp.checksum.status == 0"], capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert bad.strip() == ""
