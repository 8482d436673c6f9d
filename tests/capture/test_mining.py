"""The stratum table: one row per TCP segment opening with a mining JSON-RPC call (Stratum v1, CryptoNote/XMRig,
Ethereum stratum), only its kind kept; generic JSON-RPC, HTTP, cut names, responses and hostile bytes give none."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from netsentry.pipeline.capture.reader import read_capture
from netsentry.pipeline.capture.stage import run_capture
from netsentry.pipeline.core import catalog
from netsentry.pipeline.core.schemas import (
    STRATUM_AUTHORIZE,
    STRATUM_DIFFICULTY,
    STRATUM_GETWORK,
    STRATUM_JOB,
    STRATUM_OTHER,
    STRATUM_SUBMIT,
    STRATUM_SUBSCRIBE,
)
from tests import pcapbuild as pb

T0 = 1_700_000_000_000_000_000
MINER, POOL = "10.0.0.5", "203.0.113.9"
WALLET = "4" + "8AbCdEfGh1" * 9 + "Xyz"  # a 94-character Monero-style address
V1_SESSION = [
    (0, b'{"id":1,"method":"mining.subscribe","params":["cgminer/4.10.0"]}\n'),
    (0, b'{"id":2,"method":"mining.authorize","params":["wallet.worker1","x"]}\n'),
    (
        1,
        b'{"id":1,"result":[[["mining.notify","ae6812eb4cd7735a"]],"08000002",4],"error":null}\n'
        b'{"id":null,"method":"mining.set_difficulty","params":[8]}\n',
    ),  # answer, then a pushed difficulty
    (
        1,
        b'{"params":["bf","4d16b6f85af6e2198f44ae2a6de67f78487ae5611b77c6c0440b921e00000000","01000000",[],'
        b'"00000002","1c2ac4af","504e86b9",false],"id":null,"method":"mining.notify"}\n',
    ),  # params first
    (0, b'{"id":4,"method":"mining.submit","params":["wallet.worker1","bf","00000001","504e86ed","b2957c02"]}\n'),
    (1, b'{"id":4,"result":true,"error":null}\n'),  # a response: no row
    (0, b' \r\n {"id":5,"method":"mining.configure","params":[["version-rolling"],{}]}\n'),  # leading whitespace
]
V1_METHODS = [STRATUM_SUBSCRIBE, STRATUM_AUTHORIZE, STRATUM_DIFFICULTY, STRATUM_JOB, STRATUM_SUBMIT, STRATUM_OTHER]
MONERO_SESSION = [
    (
        0,
        b'{"id":1,"jsonrpc":"2.0","method":"login","params":{"login":"' + WALLET.encode() + b'","pass":"x",'
        b'"agent":"XMRig/6.21.0 (Linux x86_64) libuv/1.44.2 gcc/11.4.0","algo":["rx/0","cn/r"]}}\n',
    ),
    (
        1,
        b'{"jsonrpc":"2.0","method":"job","params":{"blob":"0e0ee1b5f2a006' + b"00" * 30 + b'","job_id":"8Vz",'
        b'"target":"b88d0600","algo":"rx/0","height":3106800}}\n',
    ),
    (
        0,
        b'{"id":2,"jsonrpc":"2.0","method":"submit","params":{"id":"f1a2","job_id":"8Vz","nonce":"d0030040",'
        b'"result":"e1364b8782719d7683e2ccd3d8f724bc59dfa780a9e960e7c0e0046acdb40100"}}\n',
    ),
    (0, b'{"id":3,"jsonrpc":"2.0","method":"keepalived","params":{"id":"1be0b7b6-b15a-47be"}}\n'),
    (1, b'{"id":3,"jsonrpc":"2.0","error":null,"result":{"status":"KEEPALIVED"}}\n'),
]
MONERO_METHODS = [STRATUM_AUTHORIZE, STRATUM_JOB, STRATUM_SUBMIT, STRATUM_OTHER]
ETH_SESSION = [
    (
        0,
        b'{"id":1,"jsonrpc":"2.0","method":"eth_submitLogin","params":["0xb85150eb365e7df0941f0cf08235f987ba91506a"],'
        b'"worker":"rig1"}\n',
    ),
    (0, b'{"id":5,"jsonrpc":"2.0","method":"eth_getWork","params":[]}\n'),
    (0, b'{"id":6,"jsonrpc":"2.0","method":"eth_submitHashrate","params":["0x500000","0x59daa26581d0ac"]}\n'),
]
ETH_METHODS = [STRATUM_AUTHORIZE, STRATUM_GETWORK, STRATUM_GETWORK]
NEGATIVES = [
    b'{"jsonrpc":"2.0","id":1,"method":"getblock","params":["00000000c937983704a73af28acdec37b049d214adbda81d7e2a3dd1'
    b'46f6ed09"]}\n',  # a node's generic JSON-RPC API
    b'Content-Length: 84\r\n\r\n{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"processId":1,"rootUri":null}}',
    b'{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"processId":1,"rootUri":null,"capabilities":{}}}\n',
    b'{"jsonrpc":"2.0","id":7,"method":"login","params":{"username":"alice","password":"hunter2"}}\n',  # web login
    b'{"jsonrpc":"2.0","id":8,"method":"submit","params":{"form":"contact","fields":{"job_id":"x"}}}\n',
    b'{"jsonrpc":"2.0","id":9,"result":{"method":"mining.notify"}}\n',  # nested "method": a response
    b'{"note":"the method \\"mining.submit\\" appears in a string","method":"ping"}\n',
    b"GET /api/mining.subscribe HTTP/1.1\r\nHost: example.com\r\n\r\n",
    b'POST / HTTP/1.1\r\nContent-Type: application/json\r\n\r\n{"id":1,"method":"mining.subscribe","params":[]}',
    b'{"id":1,"method":"mining.subsc',  # cut in the middle of the method name
    b'{"id":1,"method":',  # cut before it
    bytes(range(256)),
]


def segment(direction: int, payload: bytes, sport: int = 40000, dport: int = 3333, miner: str = MINER) -> bytes:
    a, b = (miner, POOL) if direction == 0 else (POOL, miner)
    pa_, pb_ = (sport, dport) if direction == 0 else (dport, sport)
    return pb.ethernet(pb.ipv4(a, b, pb.TCP, pb.tcp(a, b, pa_, pb_, flags=pb.PSH | pb.ACK, payload=payload)))


def stratum_of(path: Path) -> dict[str, list]:
    tables = [b.stratum for b in read_capture(path) if b.stratum is not None]
    return pa.concat_tables(tables).to_pydict() if tables else {"method": [], "ts_ns": []}


def write(tmp: Path, frames: list[bytes], name: str = "m.pcap", **kw) -> Path:
    return pb.write_pcap(tmp / name, [pb.Record(f, ts_ns=T0 + i * 1000, **kw) for i, f in enumerate(frames)])


def test_stratum_v1_session_gives_one_row_per_call(tmp_path: Path) -> None:
    t = stratum_of(write(tmp_path, [segment(d, p) for d, p in V1_SESSION]))
    assert t["method"] == V1_METHODS
    assert t["ts_ns"] == [T0 + i * 1000 for i in (0, 1, 2, 3, 4, 6)]
    assert t["dst_port"][0] == 3333 and t["src_port"][2] == 3333  # both directions, addresses as captured
    assert set(t) == {"ts_ns", "capture_point", "vni", "ip_version", "src_ip", "dst_ip", "src_port", "dst_port",
                      "method"}  # fmt: skip


def test_cryptonote_and_ethereum_sessions(tmp_path: Path) -> None:
    t = stratum_of(write(tmp_path, [segment(d, p) for d, p in MONERO_SESSION + ETH_SESSION]))
    assert t["method"] == MONERO_METHODS + ETH_METHODS


def test_non_mining_payloads_give_no_row(tmp_path: Path) -> None:
    frames = [segment(0, p) for p in NEGATIVES] + [segment(0, b"")]
    assert stratum_of(write(tmp_path, frames))["method"] == []


def test_snap_length_cut_inside_the_name_gives_no_row(tmp_path: Path) -> None:
    frame = segment(0, V1_SESSION[0][1])
    cut_at = len(frame) - len(V1_SESSION[0][1]) + len(b'{"id":1,"method":"mining.sub')
    path = pb.write_pcap(tmp_path / "cut.pcap", [pb.Record(frame[:cut_at], ts_ns=T0, orig_len=len(frame))],
                         snaplen=cut_at)  # fmt: skip
    assert stratum_of(path)["method"] == []
    whole = pb.write_pcap(tmp_path / "whole.pcap", [pb.Record(frame, ts_ns=T0)])
    assert stratum_of(whole)["method"] == [STRATUM_SUBSCRIBE]


def test_hostile_bytes_read_nothing_out_of_bounds(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    junk = [b"{" + rng.integers(0, 256, int(n), dtype=np.uint8).tobytes() for n in rng.integers(0, 3000, 300)]
    junk += [b"{" * 2000, b'{"method":"' + b"\\" * 1500, b'{"' * 800, b"[" * 1000 + b"]" * 1000]
    assert stratum_of(write(tmp_path, [segment(0, j) for j in junk]))["method"] == []


def test_capture_stage_writes_the_stratum_table(tmp_path: Path) -> None:
    frames = [segment(d, p) for d, p in V1_SESSION + MONERO_SESSION]
    run_capture([write(tmp_path, frames)], tmp_path / "ws")
    manifest = catalog.manifest(tmp_path / "ws", catalog.STRATUM)
    assert manifest["table"] == "stratum" and manifest["rows"] == len(V1_METHODS) + len(MONERO_METHODS)
    assert (catalog.path(tmp_path / "ws", catalog.STRATUM) / "part-00000.parquet").exists()
    run_capture([write(tmp_path, [segment(0, NEGATIVES[0])], "quiet.pcap")], tmp_path / "ws2")
    assert catalog.manifest(tmp_path / "ws2", catalog.STRATUM)["rows"] == 0  # a table with no part: features read 0


def test_simulated_pool_sessions_read_as_their_flavour(tmp_path: Path) -> None:
    """The simulator's stratum templates (flavour from the segment size) give the calls the protocols make."""
    from netsentry.pipeline.simulate import conns as C
    from netsentry.pipeline.simulate.payloads import template

    segs = [(0, True, 150), (0, False, 150), (0, True, 151), (0, False, 151), (0, True, 152), (0, False, 152),
            (1, True, 240), (1, True, 241), (1, False, 246), (1, False, 243), (1, False, 250)]  # fmt: skip
    frames = [segment(d, template(C.APP_STRATUM, d, first, size)) for d, first, size in segs]
    want = [STRATUM_SUBSCRIBE, STRATUM_SUBMIT, STRATUM_AUTHORIZE, STRATUM_SUBMIT, STRATUM_AUTHORIZE, STRATUM_GETWORK]
    want += [STRATUM_JOB, STRATUM_JOB]  # v1 answer + notify, CryptoNote pushed job (login answer 241 holds its job)
    assert stratum_of(write(tmp_path, frames))["method"] == want
