"""Issue 15's validation on real captures we can see: the champions trained on the simulated ``mixed`` cloud
score every capture of ``../shared/data/open`` (capture → flows → features → inspect, in-process), judged by
``tests/open_corpus.py``. The issue's targets are not met yet, so the floors are today's measured counts (a
ratchet: any regression fails) and every case that passes today must keep passing; raise them as changes land.
Validation only: never train on these captures or fit a threshold to one of them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from netsentry.pipeline.core.errors import ConfigError
from netsentry.pipeline.inspect.findings import Finding
from netsentry.pipeline.train.stage import TrainResult
from tests.open_corpus import OPEN_DATA, Case, counts, judge, load_cases, passing, run_corpus, table

pytestmark = pytest.mark.xdist_group("mixed")  # shares the session's mixed workspace and models

# the cases that pass today (measured 2026-12-07, champions of the current `mixed` training)
PASSING_TODAY = {
    "traceshare/hydra-1_tasks.pcap",
    "traceshare/ncrack-paranoid.pcap",
    "esnet/tcp_0_1000_20190821.pcap",
    "sgr-favilli/hs-icmpScan.pcapng",
    "sgr-favilli/hs-tcp_synPingSweepRand.pcapng",
    "sgr-favilli/hs-udpScan.pcap",
    "korving-doh/dnstt_c2_chrome83_0b04bdc8.pcap",
    "korving-doh/iodine_filetransfer_private_base128_4c996739.pcap",
    "ndpi/mining.pcapng",
    "ndpi/bittorrent.pcap",
    "ndpi/bitcoin.pcap",
    "ndpi/doh.pcapng",
    "ndpi/youtube_quic.pcap",
    "ndpi/youtubeupload.pcap",
    "arkime/wireshark-smb-on-windows10.pcap",
    "ndpi/netflix.pcap",
    "ndpi/teams.pcap",
    "arkime/nbns.pcap",
    "arkime/wireshark-dhcp.pcap",
    "ndpi/alexa-app.pcapng",
    "arkime/wireshark-retrans.pcap",
    "sgr-favilli/hs-arpScan.pcap",
}


@pytest.mark.slow
@pytest.mark.shared
def test_open_corpus_cases_hold(trained: dict[str, TrainResult], tmp_path: Path) -> None:
    if not (OPEN_DATA / "MANIFEST.tsv").is_file():
        pytest.skip(f"open corpus not found at {OPEN_DATA} (expected <repo>/../shared/data/open/MANIFEST.tsv)")
    outcomes = run_corpus(tmp_path, trained["compromise"].tracking_uri)
    shown = table(outcomes)
    print("\n" + shown)
    got = counts(outcomes)
    assert got["attack"][0] >= 9, shown  # issue 15: >= 90 % of 10 flagged at the named host; measured 9/10
    assert got["benign"][0] >= 10, shown  # issue 15: 10/10 without a medium/high compromise finding; measured 10/10
    assert got["fault"][0] >= 2, shown  # issue 15: >= 90 % of 2 flagged; measured 2/2
    assert got["l2"][0] >= 1, shown  # issue 15: the ARP scan flagged; measured 1/1 (inspect/arp.py)
    lost = PASSING_TODAY - passing(outcomes)
    assert not lost, f"cases that passed before now fail: {sorted(lost)}\n{shown}"


def finding(kind: str, severity: str, *, ip: str = "", scope: str = "", vm: str = "") -> Finding:
    kind_type = "compromise" if kind == "compromise" else "loss"
    return Finding("id", kind, kind_type, "address", scope or ip, "", vm, ip, "", 0, 1, 1, 1.0, 0.5, severity, "m", "1",
                   "s")  # fmt: skip


def test_judging_follows_issue_15() -> None:
    attack = Case("a.pcap", "attack", ("10.0.0.2", "10.0.0.3"))
    # a medium compromise finding whose ip list names one of the hosts passes; a high one elsewhere does not
    assert judge(attack, [finding("compromise", "medium", ip="10.0.0.9;10.0.0.3")]).passed
    assert judge(attack, [finding("compromise", "high", scope="t/vm", vm="10.0.0.2")]).passed
    assert not judge(attack, [finding("compromise", "high", ip="10.0.0.20")]).passed
    low_or_fault = [finding("compromise", "low", ip="10.0.0.2"), finding("fault", "high", ip="10.0.0.2")]
    assert not judge(attack, low_or_fault).passed
    benign = Case("b.pcap", "benign", ())
    fault_only = judge(benign, [finding("fault", "high", ip="10.0.0.2"), finding("compromise", "low", ip="10.0.0.2")])
    assert fault_only.passed and fault_only.unjudged_faults == ["f:loss:high:10.0.0.2"]
    assert not judge(benign, [finding("compromise", "medium", ip="10.0.0.2")]).passed
    fault = Case("f.pcap", "fault", ("10.0.0.2",))
    assert judge(fault, [finding("fault", "medium", scope="h1-h2")]).passed
    low_or_compromise = [finding("fault", "low", ip="10.0.0.2"), finding("compromise", "high", ip="10.0.0.2")]
    assert not judge(fault, low_or_compromise).passed
    outcomes = [judge(attack, []), judge(benign, []), judge(fault, [])]
    assert counts(outcomes) == {"attack": (0, 1), "benign": (1, 1), "fault": (0, 1)}
    assert passing(outcomes) == {"b.pcap"}


def test_manifest_rows_become_cases(tmp_path: Path) -> None:
    head = "file\tclass\texpect\thosts\n"
    (tmp_path / "MANIFEST.tsv").write_text(head + "x/a.pcap\tattack\tflag\t1.2.3.4;5.6.7.8\ny.pcap\tbenign\tclean\t\n")
    assert load_cases(tmp_path) == [Case("x/a.pcap", "attack", ("1.2.3.4", "5.6.7.8")), Case("y.pcap", "benign", ())]
    (tmp_path / "MANIFEST.tsv").write_text(head + "z.pcap\tattack\tflag\t\n")
    with pytest.raises(ConfigError, match="line 2: an attack case needs 'hosts'"):
        load_cases(tmp_path)
    (tmp_path / "MANIFEST.tsv").write_text(head + "z.pcap\tweird\tflag\t\n")
    with pytest.raises(ConfigError, match="class 'weird'"):
        load_cases(tmp_path)
