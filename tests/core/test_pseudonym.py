"""Prefix-preserving keyed pseudonyms (netsentry.pipeline.core.pseudonym): construction, prefix preservation, bijection,
scrubbing of free text, tables, frames, JSON, and key loading."""

from __future__ import annotations

import hashlib
import ipaddress
import itertools
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from netsentry.pipeline.capture.reader import read_packets
from netsentry.pipeline.core.errors import ConfigError
from netsentry.pipeline.core.pseudonym import KEY_ENV, Pseudonymizer, _unique_rows, load_key
from netsentry.pipeline.core.schemas import ip16_array, ip16_from_text, ip16_numpy, ip_text
from tests.paths import TEST_DATA

DATA = TEST_DATA
KEY = b"netsentry-test-key-0123456789"
OTHER = b"another-test-key-9876543210"


@pytest.fixture()
def p() -> Pseudonymizer:
    return Pseudonymizer(KEY)


def _reference(key: bytes, addr: str) -> str:
    """The documented construction, one address and one PRF call per bit (no vectorization, no memo)."""
    k = hashlib.blake2b(key, digest_size=64, person=b"netsentry-pan").digest()
    b = bytearray(ip16_from_text([addr])[0].tobytes())
    if not any(b):
        return addr
    v4 = b[:12] == bytes(10) + b"\xff\xff"
    bits = [(b[i // 8] >> (7 - i % 8)) & 1 for i in range(128)]
    out = list(bits)
    for i in range(96 if v4 else 0, 128):
        prefix = bits[:i] + [0] * (128 - i)
        msg = bytes((4 if v4 else 6, i)) + np.packbits(prefix).tobytes()
        out[i] = bits[i] ^ (hashlib.blake2b(msg, key=k, digest_size=1).digest()[0] & 1)
    packed = np.packbits(out).tobytes()
    return str(ipaddress.IPv4Address(packed[12:])) if v4 else str(ipaddress.IPv6Address(packed))


def _common_bits(a: str, b: str) -> int:
    x, y = ipaddress.ip_address(a), ipaddress.ip_address(b)
    width = x.max_prefixlen
    d = int(x) ^ int(y)
    return width - d.bit_length()


V4_SET = [
    "10.1.1.5", "10.1.1.6", "10.1.1.7", "10.1.1.200", "10.1.2.5", "10.1.255.255", "10.2.0.1", "10.128.0.1",
    "11.1.1.5", "192.168.56.1", "192.168.56.101", "192.168.57.1", "172.16.0.8", "8.8.8.8", "8.8.4.4",
    "1.1.1.1", "0.0.0.1", "255.255.255.255", "127.0.0.1", "224.0.0.251",
]  # fmt: skip
V6_SET = [
    "fe80::1", "fe80::2", "fe80::217:f2ff:fed7:cf65", "fe80::3074:17d5:2052:c324", "2001:db8::1",
    "2001:db8::2", "2001:db8:1::1", "2001:db9::1", "ff02::fb", "ff02::1:3", "::1", "::2",
]  # fmt: skip


# --- the construction ------------------------------------------------------------------------------


def test_matches_reference_construction(p: Pseudonymizer) -> None:
    addrs = [*V4_SET, *V6_SET]
    assert p.texts(addrs) == [_reference(KEY, a) for a in addrs]
    # and through the vectorized path, with duplicates and shuffled order
    rng = np.random.default_rng(1)
    idx = rng.integers(0, len(addrs), 500)
    got = ip_text(Pseudonymizer(KEY).ip16(ip16_from_text([addrs[i] for i in idx])))
    assert list(got) == [_reference(KEY, addrs[i]) for i in idx]


def test_known_answers() -> None:
    """Pinned outputs: a change here breaks every pseudonym operators have already shared."""
    p = Pseudonymizer(b"k" * 16)
    assert p.texts(["10.1.1.5", "10.1.1.6", "10.1.2.5", "fe80::1", "::ffff:10.1.1.5"]) == [
        "0.159.46.246",
        "0.159.46.245",
        "0.159.44.128",
        "3c40:f06a:d4a8:5e43:8932:c90a:4751:215e",
        "::ffff:0.159.46.246",
    ]


@pytest.mark.parametrize("addrs", [V4_SET, V6_SET], ids=["ipv4", "ipv6"])
def test_prefix_preserved_for_every_pair(p: Pseudonymizer, addrs: list[str]) -> None:
    pseudo = dict(zip(addrs, p.texts(addrs), strict=True))
    for a, b in itertools.combinations(addrs, 2):
        assert _common_bits(pseudo[a], pseudo[b]) == _common_bits(a, b), (a, b)


def test_bijection_on_a_slash16() -> None:
    p = Pseudonymizer(KEY)
    raw = np.zeros((65536, 16), dtype=np.uint8)
    raw[:, 10:12] = 0xFF
    raw[:, 12:14] = (172, 20)
    raw[:, 14] = np.arange(65536) >> 8
    raw[:, 15] = np.arange(65536) & 0xFF
    out = p.ip16(raw)
    assert (out[:, :12] == raw[:, :12]).all()  # still IPv4-mapped
    assert (out[:, 12:14] == out[0, 12:14]).all()  # the /16 stays one /16
    low = out[:, 14].astype(np.int64) * 256 + out[:, 15]
    assert np.array_equal(np.sort(low), np.arange(65536))  # a permutation of the host part
    assert not np.array_equal(low, np.arange(65536))
    assert p.prf_calls == 16 + 65535  # one PRF call per trie node


def test_prf_calls_memoized_per_prefix() -> None:
    p = Pseudonymizer(KEY)
    hosts = [f"10.9.8.{i}" for i in range(256)]
    p.ip16(ip16_from_text(hosts))
    assert p.prf_calls == 24 + 255  # the shared /24 prefix once, then the 255 inner nodes below it
    p.ip16(ip16_from_text(hosts[:200]))
    p.texts(hosts[50:60])
    assert p.prf_calls == 24 + 255  # all memoized
    q = Pseudonymizer(KEY)
    q.ip16(ip16_from_text(hosts[:200]))
    assert q.prf_calls <= 24 + 255


def test_stable_across_calls_and_instances(p: Pseudonymizer) -> None:
    raw = ip16_from_text(V4_SET + V6_SET)
    first = p.ip16(raw)
    assert np.array_equal(first, p.ip16(raw))
    assert np.array_equal(first, Pseudonymizer(KEY).ip16(raw))
    assert p.texts(V4_SET) == Pseudonymizer(bytearray(KEY)).texts(V4_SET)


def test_key_dependence(p: Pseudonymizer) -> None:
    q = Pseudonymizer(OTHER)
    addrs = V4_SET + V6_SET
    assert all(a != b for a, b in zip(p.texts(addrs), q.texts(addrs), strict=True))
    assert p.fingerprint != q.fingerprint and len(p.fingerprint) == 8


def test_families_kept_and_zero_address_kept(p: Pseudonymizer) -> None:
    v4 = p.texts(V4_SET)
    assert all(isinstance(ipaddress.ip_address(x), ipaddress.IPv4Address) for x in v4)
    assert all(a != b for a, b in zip(V4_SET, v4, strict=True))
    v6 = p.texts(V6_SET)
    assert all(isinstance(ipaddress.ip_address(x), ipaddress.IPv6Address) for x in v6)
    assert all(ipaddress.IPv6Address(x).ipv4_mapped is None for x in v6)
    raw = ip16_from_text(["::", "10.1.1.5", "::", "fe80::1"])
    out = p.ip16(raw)
    assert not out[0].any() and not out[2].any()
    assert p.text("::") == "::"
    assert out[1, :12].tobytes() == bytes(10) + b"\xff\xff"


def test_vectorized_unique_matches_numpy() -> None:
    rng = np.random.default_rng(2)
    pool = rng.integers(0, 256, (300, 16), dtype=np.uint8)
    pool[:100, :12] = 0
    pool[:100, 10:12] = 0xFF
    raw = pool[rng.integers(0, 300, 10_000)]
    rows, inv = _unique_rows(raw)
    ref_rows, ref_inv = np.unique(raw, axis=0, return_inverse=True)
    assert np.array_equal(rows, ref_rows)
    assert np.array_equal(inv, ref_inv.ravel())
    assert np.array_equal(rows[inv], raw)


def test_ip16_shapes(p: Pseudonymizer) -> None:
    assert p.ip16(np.zeros((0, 16), dtype=np.uint8)).shape == (0, 16)
    with pytest.raises(ValueError, match=r"\(n, 16\)"):
        p.ip16(np.zeros((3, 4), dtype=np.uint8))


def test_texts_leave_non_addresses_alone(p: Pseudonymizer) -> None:
    values = [
        "10.1.1.5",
        "external",
        "",
        "10.1.1",
        "fe80::1%eth0",
        "1.2.3.4%eth0",
        "::ffff:10.1.1.5",
        "::ffff:a01:105",
        "10.1.1.5",
    ]
    out = p.texts(values)
    v = p.text("10.1.1.5")
    w = p.text("fe80::1")
    mapped = str(ipaddress.IPv6Address(f"::ffff:{v}"))
    assert out == [v, "external", "", "10.1.1", f"{w}%eth0", "1.2.3.4%eth0", f"::ffff:{v}", mapped, v]


def test_million_rows_timing() -> None:
    """Prints the cost of a 1,000,000-row column with 5,000 distinct addresses (not asserted)."""
    rng = np.random.default_rng(3)
    pool = np.zeros((5000, 16), dtype=np.uint8)
    pool[:, 10:12] = 0xFF
    pool[:, 12:] = rng.integers(0, 256, (5000, 4))
    raw = pool[rng.integers(0, 5000, 1_000_000)]
    p = Pseudonymizer(KEY)
    t0 = time.perf_counter()
    out = p.ip16(raw)
    cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    p.ip16(raw)
    warm = time.perf_counter() - t0
    distinct = len(_unique_rows(raw)[0])
    print(f"\npseudonymize 1,000,000 rows / {distinct} distinct: {cold:.3f} s cold "
          f"({p.prf_calls} PRF calls), {warm:.3f} s with the memo warm")  # fmt: skip
    assert len(_unique_rows(out)[0]) == distinct


# --- free text -------------------------------------------------------------------------------------

SCRUB_POSITIVE = [
    ("10.1.1.5:22 → 8.8.8.8", "{10.1.1.5}:22 → {8.8.8.8}"),
    ("acme/10.1.1.5", "acme/{10.1.1.5}"),
    ("fe80::1", "{fe80::1}"),
    ("from fe80::1%eth0 to ff02::fb", "from {fe80::1}%eth0 to {ff02::fb}"),
    ("[2001:db8::1]:443", "[{2001:db8::1}]:443"),
    ("src=10.1.1.5,dst=10.1.1.6;", "src={10.1.1.5},dst={10.1.1.6};"),
    ("tenant_10.1.1.5", "tenant_{10.1.1.5}"),
    ("last seen 10.1.1.5.", "last seen {10.1.1.5}."),
    ('{"ip": "192.168.56.1"}', '{"ip": "{192.168.56.1}"}'),
    ("(10.1.1.5)", "({10.1.1.5})"),
    ("host 10.1.1.5/24", "host {10.1.1.5}/24"),
    ("mapped ::ffff:10.1.1.5", "mapped {::ffff:10.1.1.5}"),
    ("FE80::1 upper", "{FE80::1} upper"),
    ("mask 10.1.1.5/255.255.255.0", "mask {10.1.1.5}/{255.255.255.0}"),
    ("0.0.0.0 listens", "{0.0.0.0} listens"),
]
SCRUB_NEGATIVE = [
    "netsentry 3.17.0",
    "Python 3.11.7",
    "at 14:02:05 and 2024-05-01T14:02:05.123Z",
    "14:02:05.123",
    "sha256 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "deadbeef:cafe",
    "1.2.3.4.5",
    "v1.2.3.4",
    "host10.1.1.5",
    "300.1.1.1",
    "010.001.001.005",
    "10.1.1",
    "aa:bb:cc:dd:ee:ff",
    "std::vector and Foo::bar",
    "a ratio of 1:2:3",
    "0x0a010105 and 167837957",
    "fe80::1g",
    "10.1.1.5a",
    "",
    "no addresses here",
    ":: is kept",
]


@pytest.mark.parametrize(("text", "template"), SCRUB_POSITIVE)
def test_scrub_replaces_addresses(p: Pseudonymizer, text: str, template: str) -> None:
    expected = re.sub(r"\{([^{}]+)\}", lambda m: p.text(m[1]), template)
    assert p.scrub(text) == expected
    assert expected != text


@pytest.mark.parametrize("text", SCRUB_NEGATIVE)
def test_scrub_leaves_non_addresses(p: Pseudonymizer, text: str) -> None:
    assert p.scrub(text) == text


def test_scrub_networks_and_reverse_names(p: Pseudonymizer) -> None:
    host = ipaddress.ip_address(p.text("10.1.1.5"))
    net = ipaddress.ip_network(f"{host}/24", strict=False)
    assert p.scrub("subnet 10.1.1.0/24") == f"subnet {net}"
    net16 = ipaddress.ip_network(f"{host}/16", strict=False)
    assert p.scrub("10.1.0.0/16") == str(net16)
    v6 = ipaddress.ip_address(p.text("2001:db8::1"))
    assert p.scrub("2001:db8::/32") == str(ipaddress.ip_network(f"{v6}/32", strict=False))
    assert p.scrub("::/0") == "::/0"
    rev = ".".join(reversed(str(host).split(".")))
    assert p.scrub("PTR 5.1.1.10.in-addr.arpa.") == f"PTR {rev}.in-addr.arpa."
    assert p.scrub_many(["10.1.1.5", None, "x"]) == [str(host), None, "x"]


def test_json_value(p: Pseudonymizer) -> None:
    raw = ip16_from_text(["10.1.1.5"])[0].tobytes()
    doc = {
        "scope": "10.1.1.5",
        "score": 0.93,
        "n": 3,
        "ok": True,
        "none": None,
        "top_remote": [{"ip": "8.8.8.8", "port": 53}, ["fe80::1", 1]],
        "by_ip": {"192.168.56.1": 12},
        "pair": ("10.1.1.5", "10.1.1.6"),
        "raw": raw,
        "note": "scan from 10.1.1.5 to 10.1.2.0/24 (version 3.17.0)",
    }
    out = p.json_value(doc)
    t = p.text
    assert out == {
        "scope": t("10.1.1.5"),
        "score": 0.93,
        "n": 3,
        "ok": True,
        "none": None,
        "top_remote": [{"ip": t("8.8.8.8"), "port": 53}, [t("fe80::1"), 1]],
        "by_ip": {t("192.168.56.1"): 12},
        "pair": (t("10.1.1.5"), t("10.1.1.6")),
        "raw": p.packed(raw),
        "note": p.scrub("scan from 10.1.1.5 to 10.1.2.0/24 (version 3.17.0)"),
    }
    assert "10.1.1.5" not in str(out) and "3.17.0" in out["note"]
    assert doc["scope"] == "10.1.1.5"  # input untouched


# --- tables and frames -----------------------------------------------------------------------------


def _no_original_text(values: list[str], originals: set[str]) -> bool:
    pat = re.compile("|".join(rf"(?<![\w.:]){re.escape(a)}(?![\w:]|\.\d)" for a in sorted(originals, key=len)[::-1]))
    return not any(pat.search(v) for v in values if v)


def test_table_on_real_capture(p: Pseudonymizer) -> None:
    t = pa.concat_tables(list(read_packets(DATA / "wikipedia.pcap")))
    src, dst = ip_text(t["src_ip"]), ip_text(t["dst_ip"])
    originals = set(src) | set(dst)
    assert {"141.142.220.118", "fe80::217:f2ff:fed7:cf65"} <= originals
    # add text columns that mention the addresses, and metadata that must survive
    note = pa.array([f"{s}:{sp} -> [{d}]" for s, d, sp in zip(src, dst, t["src_port"].to_pylist(), strict=True)])
    owner = pa.array([f"acme/{s}" for s in src]).dictionary_encode()
    t = t.append_column(pa.field("note", pa.string(), metadata={b"doc": b"free text"}), note)
    t = t.append_column("owner", owner.cast(pa.dictionary(pa.int32(), pa.string())))
    t = t.replace_schema_metadata({b"stage": b"capture"})
    t = pa.Table.from_batches(t.to_batches(max_chunksize=50))  # several chunks

    out = p.table(t)
    assert out.num_rows == t.num_rows
    assert out.schema.equals(t.schema, check_metadata=True)
    assert out.schema.field("note").metadata == {b"doc": b"free text"}

    before = set(ip16_numpy(t["src_ip"]).view("S16").ravel()) | set(ip16_numpy(t["dst_ip"]).view("S16").ravel())
    after = set(ip16_numpy(out["src_ip"]).view("S16").ravel()) | set(ip16_numpy(out["dst_ip"]).view("S16").ravel())
    assert not before & after and len(before) == len(after)
    assert list(ip_text(out["src_ip"])) == p.texts(list(src))
    assert list(ip_text(out["dst_ip"])) == p.texts(list(dst))
    for name in ("note", "owner", "capture_point", "tenant", "vm"):
        assert _no_original_text(out[name].cast(pa.string()).to_pylist(), originals), name
    assert out["note"][0].as_py() == f"{p.text(src[0])}:{t['src_port'][0].as_py()} -> [{p.text(dst[0])}]"
    assert out["owner"].to_pylist() == [f"acme/{x}" for x in p.texts(list(src))]
    assert all(c.dictionary.to_pylist() == ["wikipedia.pcap"] for c in out["capture_point"].chunks)
    untouched = [n for n in t.column_names if n not in ("src_ip", "dst_ip", "note", "owner")]
    assert out.select(untouched).equals(t.select(untouched))


def test_table_nulls_empty_and_other_string_types(p: Pseudonymizer) -> None:
    raw = ip16_from_text(["10.1.1.5", "10.1.1.6", "::"])
    ips = pa.array([raw[0].tobytes(), None, raw[2].tobytes()], type=pa.binary(16))
    txt = ["10.1.1.5", None, "x"]
    t = pa.table(
        {
            "ip": ips,
            "large": pa.array(txt, pa.large_string()),
            "view": pa.array(txt, pa.string_view()),
            "dict": pa.array(txt).dictionary_encode(),
            "nested": pa.array([txt, None, []]),  # not a string column: left as is (documented)
            "n": [1, 2, 3],
        }
    )
    out = p.table(t)
    assert out.schema == t.schema
    assert out["ip"].to_pylist() == [p.packed(raw[0].tobytes()), None, bytes(16)]
    for name in ("large", "view", "dict"):
        assert out[name].to_pylist() == [p.text("10.1.1.5"), None, "x"], name
    assert out["nested"].equals(t["nested"]) and out["n"].equals(t["n"])
    empty = t.slice(0, 0)
    assert p.table(empty).equals(empty)
    sliced = t.slice(1, 2)  # an array offset
    assert p.table(sliced)["ip"].to_pylist() == [None, bytes(16)]


def test_frame(p: Pseudonymizer) -> None:
    raw = ip16_from_text(["10.1.1.5", "fe80::1"])
    df = pd.DataFrame(
        {
            "scope": ["10.1.1.5", "10.1.1.6", None, "acme"],
            "raw": [raw[0].tobytes(), raw[1].tobytes(), raw[0].tobytes(), None],
            "evidence": [{"ip": "8.8.8.8"}, [], {"ip": "fe80::1"}, {}],
            "kind": pd.Categorical(["scan from 10.1.1.5", "fault", "fault", "scan from 10.1.1.5"]),
            "score": [0.1, 0.2, 0.3, 0.4],
        },
        index=[10, 11, 12, 13],
    )
    out = p.frame(df)
    t = p.text
    assert list(out.columns) == list(df.columns) and list(out.index) == list(df.index)
    assert [str(d) for d in out.dtypes] == [str(d) for d in df.dtypes]  # categories change, the kind stays
    assert out["scope"].tolist()[:2] == [t("10.1.1.5"), t("10.1.1.6")] and out["scope"].tolist()[3] == "acme"
    assert pd.isna(out["scope"].iloc[2])
    a, b = p.packed(raw[0].tobytes()), p.packed(raw[1].tobytes())
    assert out["raw"].tolist()[:3] == [a, b, a]
    assert out["raw"].iloc[3] is None
    assert out["evidence"].tolist() == [{"ip": t("8.8.8.8")}, [], {"ip": t("fe80::1")}, {}]
    assert out["kind"].tolist() == [f"scan from {t('10.1.1.5')}", "fault", "fault", f"scan from {t('10.1.1.5')}"]
    assert out["score"].equals(df["score"])
    assert df["scope"].iloc[0] == "10.1.1.5"  # input untouched


def test_table_and_arrow_helpers_agree(p: Pseudonymizer) -> None:
    raw = ip16_from_text(V4_SET + V6_SET)
    t = pa.table({"a": ip16_array(raw)})
    assert np.array_equal(ip16_numpy(p.table(t)["a"]), p.ip16(raw))


# --- keys ------------------------------------------------------------------------------------------


def test_load_key_from_file(tmp_path: Path) -> None:
    f = tmp_path / "key"
    f.write_bytes(b"0123456789abcdef\n")
    assert load_key(f) == b"0123456789abcdef"
    f.write_bytes(b"\x00\xff" * 8)
    assert load_key(f) == b"\x00\xff" * 8
    f.write_bytes(b"short\n")
    with pytest.raises(ConfigError, match=r"key.*5 bytes; expected at least 16") as e:
        load_key(f)
    assert str(f) in str(e.value)
    with pytest.raises(ConfigError, match="not found") as e:
        load_key(tmp_path / "missing")
    assert "missing" in str(e.value)
    with pytest.raises(ConfigError, match="cannot read pseudonym key file"):
        load_key(tmp_path)  # a directory


def test_load_key_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, "0123456789abcdef")
    assert load_key(None) == b"0123456789abcdef"
    monkeypatch.setenv(KEY_ENV, "too short")
    with pytest.raises(ConfigError, match=f"{KEY_ENV} holds 9 characters; expected at least 16"):
        load_key(None)
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(ConfigError, match=f"{KEY_ENV} is not set"):
        load_key(None)


def test_same_secret_same_key_from_either_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "key"
    f.write_text("correct horse battery staple\n")
    monkeypatch.setenv(KEY_ENV, "correct horse battery staple")
    assert load_key(f) == load_key(None)


def test_short_key_refused() -> None:
    with pytest.raises(ConfigError, match="at least 16 bytes"):
        Pseudonymizer(b"short")
