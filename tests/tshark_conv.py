"""tshark's view of a capture's conversations, the reference for the golden flow tests.

``python -m tests.tshark_conv`` rewrites ``tests/data/golden/*.conv.csv`` from tshark.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd

from tests.paths import TEST_DATA

DATA = TEST_DATA
GOLDEN = DATA / "golden"
GOLDEN_TRACES = (
    "ssh-dups.pcap",
    "sshguess.pcap",
    "bruteforce.pcap",
    "bro.org.pcap",
    "cwd-navigation.pcap",
    "wikipedia.pcap",
    "retransmit-fast009.pcap",
)
_UNITS = {"bytes": 1, "kB": 1000, "MB": 1000**2, "GB": 1000**3}
_ROW = re.compile(
    r"^(?P<a>\S+):(?P<ap>\d+)\s+<->\s+(?P<b>\S+):(?P<bp>\d+)\s+"
    r"(?P<b2a_f>\d+)\s+(?P<b2a_b>\d+)\s+(?P<b2a_u>\w+)\s+"
    r"(?P<a2b_f>\d+)\s+(?P<a2b_b>\d+)\s+(?P<a2b_u>\w+)\s+"
    r"(?P<tot_f>\d+)\s+(?P<tot_b>\d+)\s+(?P<tot_u>\w+)"
)
COLUMNS = ["proto", "a", "a_port", "b", "b_port", "frames_a2b", "frames_b2a", "bytes_a2b", "bytes_b2a"]


def has_tshark() -> bool:
    return shutil.which("tshark") is not None


def _tshark(args: list[str]) -> str:
    return subprocess.run(["tshark", *args], check=True, capture_output=True, text=True).stdout


def conv_table(path: Path) -> pd.DataFrame:
    """``tshark -q -z conv,tcp -z conv,udp``: frames per direction (exact), bytes as printed (rounded)."""
    text = _tshark(["-r", str(path), "-q", "-z", "conv,tcp", "-z", "conv,udp"])
    rows, proto = [], None
    for line in text.splitlines():
        if line.startswith("TCP Conversations"):
            proto = 6
        elif line.startswith("UDP Conversations"):
            proto = 17
        m = _ROW.match(line)
        if m and proto:
            a, b = m["a"].strip("[]"), m["b"].strip("[]")
            rows.append(
                {
                    "proto": proto,
                    "a": a,
                    "a_port": int(m["ap"]),
                    "b": b,
                    "b_port": int(m["bp"]),
                    "frames_a2b": int(m["a2b_f"]),
                    "frames_b2a": int(m["b2a_f"]),
                    "approx_bytes": int(m["tot_b"]) * _UNITS[m["tot_u"]],
                    "unit": _UNITS[m["tot_u"]],
                }
            )
    return pd.DataFrame(rows)


def exact_bytes(path: Path) -> pd.DataFrame:
    """Exact wire bytes per conversation direction, summed from ``frame.len``."""
    fields = [
        "frame.len",
        "ip.src",
        "ipv6.src",
        "ip.dst",
        "ipv6.dst",
        "tcp.srcport",
        "tcp.dstport",
        "udp.srcport",
        "udp.dstport",
        "ip.proto",
        "ipv6.nxt",
    ]
    args = ["-r", str(path), "-T", "fields", "-E", "separator=\t", "-E", "occurrence=f"]
    for f in fields:
        args += ["-e", f]
    df = pd.read_csv(__import__("io").StringIO(_tshark(args)), sep="\t", names=fields, dtype=str, keep_default_na=False)
    df["src"] = df["ip.src"].where(df["ip.src"] != "", df["ipv6.src"])
    df["dst"] = df["ip.dst"].where(df["ip.dst"] != "", df["ipv6.dst"])
    df["sport"] = df["tcp.srcport"].where(df["tcp.srcport"] != "", df["udp.srcport"])
    df["dport"] = df["tcp.dstport"].where(df["tcp.dstport"] != "", df["udp.dstport"])
    df["proto"] = df["tcp.srcport"].ne("").map({True: 6, False: 17})
    df = df[(df["sport"] != "") & (df["src"] != "")].copy()
    df["bytes"] = df["frame.len"].astype(int)
    return df.groupby(["proto", "src", "sport", "dst", "dport"], as_index=False)["bytes"].sum()


def golden(path: Path) -> pd.DataFrame:
    """Conversations with exact frames and bytes per direction, as tshark computes them."""
    conv = conv_table(path)
    by_dir = exact_bytes(path).set_index(["proto", "src", "sport", "dst", "dport"])["bytes"]

    def lookup(proto: int, s: str, sp: int, d: str, dp: int) -> int:
        return int(by_dir.get((proto, s, str(sp), d, str(dp)), 0))

    conv["bytes_a2b"] = [lookup(r.proto, r.a, r.a_port, r.b, r.b_port) for r in conv.itertuples()]
    conv["bytes_b2a"] = [lookup(r.proto, r.b, r.b_port, r.a, r.a_port) for r in conv.itertuples()]
    total = conv["bytes_a2b"] + conv["bytes_b2a"]
    bad = (total - conv["approx_bytes"]).abs() > conv["unit"]
    if bad.any():
        raise AssertionError(f"{path}: exact bytes disagree with tshark's conversation table:\n{conv[bad]}")
    return conv[COLUMNS].sort_values(COLUMNS[:5]).reset_index(drop=True)


def main() -> None:
    GOLDEN.mkdir(exist_ok=True)
    for name in GOLDEN_TRACES:
        g = golden(DATA / name)
        g.to_csv(GOLDEN / f"{name}.conv.csv", index=False)
        print(f"{name}: {len(g)} conversations", file=sys.stderr)


if __name__ == "__main__":
    main()
