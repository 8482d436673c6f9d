"""Tenant map: loading, validation errors, matching rules, packet labelling, round trip."""

from __future__ import annotations

import ipaddress
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from netsentry.pipeline.capture.reader import columns_to_table
from netsentry.pipeline.capture.tenants import (
    EXTERNAL,
    UNKNOWN,
    TenantMap,
    assign_packets,
    dump_tenant_map,
    endpoint_labels,
    load_tenant_map,
    tenant_map_from_dict,
)
from netsentry.pipeline.core.errors import ConfigError, InputNotFoundError
from netsentry.pipeline.core.schemas import PACKETS, TENANT_TYPE, ip16_array, ip16_from_text
from tests.paths import REPO

EXAMPLE = REPO / "configs" / "tenants.example.yaml"


@pytest.fixture(scope="module")
def tmap() -> TenantMap:
    return load_tenant_map(EXAMPLE)


def names(tm: TenantMap, ips: list[str], vnis: list[int]) -> list[tuple[str, str]]:
    lab = tm.lookup(np.array(vnis, dtype=np.uint32), ip16_from_text(ips))
    assert lab.tenant.dtype == np.int32 and lab.vm.dtype == np.int32
    return [(lab.tenants[t], lab.vms[v]) for t, v in zip(lab.tenant, lab.vm, strict=True)]


# ------------------------------------------------------------------ loading and matching


def test_example_loads(tmap: TenantMap) -> None:
    assert [v.id for v in tmap.config.vpcs] == ["acme-prod", "acme-analytics", "globex", "initech-flat"]
    assert tmap.tenants == (EXTERNAL, "acme", "globex", "initech")
    assert tmap.vms[:2] == (EXTERNAL, UNKNOWN)
    assert "globex-bastion" in tmap.vms and len(tmap.vms) == 12


def test_longest_prefix_wins_regardless_of_order() -> None:
    tm = tenant_map_from_dict(
        {
            "vpcs": [
                {"id": "corp", "cidr": "10.0.0.0/8"},
                {"id": "lab", "cidr": "10.1.0.0/16"},
                {"id": "lab-core", "tenant": "lab", "cidr": "10.1.2.0/24"},
            ]
        }
    )
    got = names(tm, ["10.1.2.3", "10.1.9.9", "10.200.0.1", "11.0.0.1"], [0, 0, 0, 0])
    assert got == [("lab", UNKNOWN), ("lab", UNKNOWN), ("corp", UNKNOWN), (EXTERNAL, EXTERNAL)]
    lab = tm.lookup(np.zeros(3, np.uint32), ip16_from_text(["10.1.2.3", "10.1.9.9", "10.200.0.1"]))
    assert lab.tenant.tolist() == [2, 2, 1]  # one code per tenant, not per VPC


def test_same_cidr_told_apart_by_vni(tmap: TenantMap) -> None:
    got = names(tmap, ["10.0.1.10", "10.0.1.10", "10.0.1.12", "10.0.1.12"], [1001, 2001, 1001, 2001])
    assert got == [
        ("acme", "acme-web-1"),
        ("globex", "globex-app-1"),
        ("acme", UNKNOWN),  # inside acme-prod, but no such port there
        ("globex", "globex-app-2"),
    ]


def test_vni_zero_or_undeclared_falls_back_to_prefix_first_declared(tmap: TenantMap) -> None:
    # acme-prod and globex both cover 10.0.0.0/16; without a usable VNI the first declared (acme) wins.
    got = names(tmap, ["10.0.1.10", "10.0.1.10", "10.0.1.12", "172.20.4.5"], [0, 4242, 0, 0])
    assert got == [
        ("acme", "acme-web-1"),
        ("acme", "acme-web-1"),
        ("acme", UNKNOWN),
        ("acme", "acme-spark-master"),
    ]


def test_overlay_matches_own_vpc_then_vni_less_vpcs_only(tmap: TenantMap) -> None:
    got = names(tmap, ["192.168.50.7", "172.20.4.5", "10.0.255.4", "10.0.255.4"], [1001, 2001, 2001, 1001])
    assert got == [
        ("initech", "initech-ldap"),  # flat provider network reachable from an overlay
        (EXTERNAL, EXTERNAL),  # acme-analytics has VNI 1002: not visible from VNI 2001
        ("globex", "globex-bastion"),
        ("acme", UNKNOWN),  # same address in VNI 1001 is acme-prod's space
    ]


def test_ipv6(tmap: TenantMap) -> None:
    got = names(tmap, ["fd00:ac:e:1::10", "fd00:ac:e:1::11", "fd00:ac:e:77::1", "2001:db8::1"], [1001, 0, 0, 0])
    assert got == [
        ("acme", "acme-web-1"),
        ("acme", "acme-web-2"),
        ("acme", UNKNOWN),
        (EXTERNAL, EXTERNAL),
    ]
    # an IPv4 VPC never swallows IPv6 addresses and vice versa
    assert tmap.lookup_text("::a00:10a") == (EXTERNAL, EXTERNAL)


def test_unknown_addresses_are_external(tmap: TenantMap) -> None:
    assert names(tmap, ["8.8.8.8", "10.1.0.1", "0.0.0.0"], [1001, 0, 0]) == [(EXTERNAL, EXTERNAL)] * 3
    assert TenantMap.empty().lookup_text("10.0.1.10", 1001) == (EXTERNAL, EXTERNAL)
    lab = TenantMap.empty().lookup(np.zeros(0, np.uint32), np.zeros((0, 16), np.uint8))
    assert len(lab.tenant) == 0 and lab.tenants == (EXTERNAL,)


def test_vm_lookup_codes_and_arrow(tmap: TenantMap) -> None:
    ips = ["10.0.2.20", "10.0.1.11", "192.168.50.8", "9.9.9.9", "10.0.2.20"]
    vnis = [1001, 1001, 0, 0, 1001]
    t_arr, vm_arr = endpoint_labels(pa.array(vnis, pa.uint32()), ip16_array(ip16_from_text(ips)), tmap)
    assert t_arr.type == TENANT_TYPE and vm_arr.type == TENANT_TYPE
    assert t_arr.to_pylist() == ["acme", "acme", "initech", EXTERNAL, "acme"]
    assert vm_arr.to_pylist() == ["acme-db-1", "acme-web-2", "initech-files", EXTERNAL, "acme-db-1"]
    # every batch carries the same full dictionary, so batches concatenate without unification
    assert vm_arr.dictionary.to_pylist() == list(tmap.vms)


def test_vectorized_matches_scalar_and_timing(tmap: TenantMap) -> None:
    rng = np.random.default_rng(7)
    n, distinct = 1_000_000, 40_000
    pool_ip = np.zeros((distinct, 16), np.uint8)
    pool_ip[:, 10:12] = 0xFF
    pool_ip[:, 12:] = rng.integers(0, 256, (distinct, 4), dtype=np.uint8)
    pool_ip[: distinct // 2, 12:14] = [10, 0]  # half inside 10.0.0.0/16
    pool_ip[:50, 12:] = [
        [10, 0, 1, 10],
        [10, 0, 1, 12],
        [192, 168, 50, 7],
        [172, 20, 4, 6],
        [10, 0, 2, 20],
    ] * 10
    pool_vni = rng.choice(np.array([0, 1001, 2001, 1002], np.uint32), distinct)
    pick = rng.integers(0, distinct, n)
    vni, ip = pool_vni[pick], pool_ip[pick]
    tmap.lookup(vni[:1000], ip[:1000])  # warm up
    best = min(_timed(tmap, vni, ip) for _ in range(3))
    print(f"\ntenant lookup: {n:,} packets, {distinct:,} distinct (vni, ip): {best * 1e3:.0f} ms")
    lab = tmap.lookup(vni, ip)
    # compare with the one-at-a-time path on a sample of distinct inputs
    for i in range(0, distinct, 997):
        rows = np.flatnonzero(pick == i)[:1]
        if len(rows) == 0:
            continue
        r = rows[0]
        text = str(ipaddress.IPv4Address(bytes(ip[r, 12:])))
        expect = tmap.lookup_text(text, int(vni[r]))
        assert (lab.tenants[lab.tenant[r]], lab.vms[lab.vm[r]]) == expect
    assert set(np.unique(lab.tenant)) <= {0, 1, 2, 3}
    assert (lab.tenant == 0).sum() > 0 and (lab.vm >= 2).sum() > 0


def _timed(tmap: TenantMap, vni: np.ndarray, ip: np.ndarray) -> float:
    t0 = time.perf_counter()
    tmap.lookup(vni, ip)
    return time.perf_counter() - t0


# ------------------------------------------------------------------ errors

GOOD_VPC = "  - id: a\n    cidr: 10.0.0.0/16\n"


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "tenants.yaml"
    p.write_text(text)
    return p


@pytest.mark.parametrize(
    ("body", "field", "fragment"),
    [
        (
            GOOD_VPC + "  - id: b\n    cidr: 10.0.0.0/8\n    subnets:\n      - cidr: 10.0.0.0/33\n",
            "vpcs[1].subnets[0].cidr",
            "'10.0.0.0/33' is not a valid network",
        ),
        (
            GOOD_VPC + "    subnets:\n      - cidr: 10.0.1.0/24\n        ports:\n"
            "          - {ip: 10.0.1.5, vm: x}\n          - {ip: 10.0.2.5, vm: y}\n",
            "vpcs[0].subnets[0].ports[1].ip",
            "'10.0.2.5' is not inside its subnet 10.0.1.0/24",
        ),
        (
            GOOD_VPC + "    subnets:\n      - cidr: 10.9.0.0/24\n",
            "vpcs[0].subnets[0].cidr",
            "10.9.0.0/24 is not inside the VPC's cidr (10.0.0.0/16)",
        ),
        (GOOD_VPC + "    cidr6: fd00::/48\n", "vpcs[0].cidr6", "unknown field"),
        (GOOD_VPC + "    vni: 16777216\n", "vpcs[0].vni", "less than or equal to 16777215"),
        (
            GOOD_VPC + "    vni: 7\n  - id: b\n    cidr: 10.1.0.0/16\n    vni: 7\n",
            "vpcs[1].vni",
            "already used",
        ),
        (GOOD_VPC + "  - id: a\n    cidr: 10.1.0.0/16\n", "vpcs[1].id", "already used by vpcs[0]"),
        ("  - cidr: 10.0.0.0/16\n", "vpcs[0].id", "required field is missing"),
        ("  - id: external\n    cidr: 10.0.0.0/16\n", "vpcs[0].id", "'external' is reserved"),
        (
            GOOD_VPC + "    subnets:\n      - cidr: 10.0.1.0/24\n        ports:\n"
            "          - {ip: 10.0.1.3, vm: x, mac: 12:00:00:00:00:01}\n",
            "vpcs[0].subnets[0].ports[0].mac",
            "quote the value",
        ),
        (
            GOOD_VPC + "    secondary_cidrs: [fd00::/48, 10.0.0.1/8]\n",
            "vpcs[0].secondary_cidrs[1]",
            "not a valid",
        ),
        (
            GOOD_VPC + "    subnets:\n      - cidr: 10.0.1.0/24\n        ports: [{ip: 10.0.1.300, vm: x}]\n",
            "vpcs[0].subnets[0].ports[0].ip",
            "'10.0.1.300' is not a valid IP address",
        ),
        (
            GOOD_VPC + "    subnets:\n      - cidr: 10.0.1.0/24\n        ports: [{ip: 10.0.1.3, vm: unknown}]\n",
            "vpcs[0].subnets[0].ports[0].vm",
            "reserved",
        ),
    ],
)
def test_invalid_file_one_line_names_file_and_field(tmp_path: Path, body: str, field: str, fragment: str) -> None:
    p = _write(tmp_path, "vpcs:\n" + body)
    with pytest.raises(ConfigError) as ei:
        load_tenant_map(p)
    msg = str(ei.value)
    assert "\n" not in msg
    assert msg.startswith(f"{p}: {field}: "), msg
    assert fragment in msg, msg
    assert ei.value.exit_code == 2


def test_yaml_syntax_error_names_line(tmp_path: Path) -> None:
    p = _write(tmp_path, "vpcs:\n  - id: a\n    cidr: [10.0.0.0/16\n    vni: 3\n")
    with pytest.raises(ConfigError) as ei:
        load_tenant_map(p)
    msg = str(ei.value)
    assert "\n" not in msg and msg.startswith(f"{p}: line 4")
    assert "YAML syntax error" in msg


def test_wrong_top_level_and_empty(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"tenants\.yaml: expected a mapping"):
        load_tenant_map(_write(tmp_path, "- id: a\n"))
    assert load_tenant_map(_write(tmp_path, "# nothing yet\n")).tenants == (EXTERNAL,)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputNotFoundError, match=r"nope\.yaml: tenant map not found"):
        load_tenant_map(tmp_path / "nope.yaml")


# ------------------------------------------------------------------ round trip


def test_dump_load_round_trip(tmap: TenantMap, tmp_path: Path) -> None:
    out = tmp_path / "sub" / "tenants.yaml"
    dump_tenant_map(tmap, out)
    back = load_tenant_map(out)
    assert back.to_yaml_dict() == tmap.to_yaml_dict()
    assert back.config == tmap.config
    assert back.tenants == tmap.tenants and back.vms == tmap.vms
    assert back.lookup_text("10.0.1.10", 2001) == ("globex", "globex-app-1")
    # defaults are omitted, given values kept (mac normalised to lower case)
    d = tenant_map_from_dict(
        {
            "vpcs": [
                {
                    "id": "z",
                    "cidr": "fd00:0:0::/48",
                    "subnets": [
                        {
                            "cidr": "fd00::/64",
                            "ports": [{"ip": "fd00:0::1", "mac": "02:AA:00:00:00:01", "vm": "z1"}],
                        }
                    ],
                }
            ]
        }
    ).to_yaml_dict()
    port = {"ip": "fd00::1", "mac": "02:aa:00:00:00:01", "vm": "z1"}
    assert d == {"vpcs": [{"id": "z", "cidr": "fd00::/48", "subnets": [{"cidr": "fd00::/64", "ports": [port]}]}]}


# ------------------------------------------------------------------ packets


def _packets(rows: list[tuple[int, str, str]]) -> pa.Table:
    n = len(rows)
    cols = {f.name: np.zeros(n, dtype=f.type.to_pandas_dtype()) for f in PACKETS if not pa.types.is_dictionary(f.type)}
    cols["vni"] = np.array([r[0] for r in rows], np.uint32)
    cols["src_ip"] = ip16_from_text([r[1] for r in rows])
    cols["dst_ip"] = ip16_from_text([r[2] for r in rows])
    return columns_to_table(cols, "tap0")


def test_assign_packets_src_then_dst(tmap: TenantMap) -> None:
    table = _packets(
        [
            (1001, "10.0.1.10", "8.8.8.8"),  # src internal → src
            (2001, "8.8.8.8", "10.0.1.10"),  # src external, dst internal → dst
            (0, "1.1.1.1", "8.8.8.8"),  # both external
            (0, "192.168.50.7", "172.20.4.5"),  # both internal → src wins
            (1001, "10.0.3.3", "10.0.1.10"),  # src in VPC but on no port → src, unknown
            (0, "2001:db8::5", "fd00:ac:e:1::11"),
        ]
    )
    out = assign_packets(table, tmap)
    assert out.schema.equals(PACKETS, check_metadata=False)
    assert [f.nullable for f in out.schema] == [f.nullable for f in PACKETS]
    assert out.column("tenant").to_pylist() == ["acme", "globex", EXTERNAL, "initech", "acme", "acme"]
    assert out.column("vm").to_pylist() == [
        "acme-web-1",
        "globex-app-1",
        EXTERNAL,
        "initech-ldap",
        UNKNOWN,
        "acme-web-2",
    ]
    assert out.column("src_ip").equals(table.column("src_ip"))
    # chunked input and an empty table work too
    two = pa.concat_tables([table, table])
    assert assign_packets(two, tmap).column("tenant").to_pylist()[6:] == out.column("tenant").to_pylist()
    empty = assign_packets(table.slice(0, 0), tmap)
    assert empty.num_rows == 0 and empty.schema.equals(PACKETS)


# ------------------------------------------------------------------ port identities (a VM tap has no VNI)

SHARED = {
    "vpcs": [
        {"id": "a", "tenant": "acme", "cidr": "10.0.0.0/16", "vni": 100, "subnets": [{"cidr": "10.0.1.0/24", "ports": [
            {"ip": "10.0.1.10", "vm": "acme-web", "mac": "02:01:0a:00:01:0a"},
            {"ip": "10.0.1.11", "vm": "acme-db"}]}]},  # no MAC declared: not an identity
        {"id": "g", "tenant": "globex", "cidr": "10.0.0.0/16", "vni": 200, "subnets": [{"cidr": "10.0.1.0/24",
                                                                                     "ports": [
            {"ip": "10.0.1.10", "vm": "globex-web", "mac": "02:02:0a:00:01:0a"},
            {"ip": "10.0.1.11", "vm": "globex-db", "mac": "02:02:0a:00:01:0b"}]}]},
        {"id": "f", "tenant": "flat", "cidr": "172.20.0.0/16", "subnets": [{"cidr": "172.20.1.0/24", "ports": [
            {"ip": "172.20.1.5", "vm": "flat-1", "mac": "02:00:ac:14:01:05"}]}]},  # no VNI to give
    ]
}  # fmt: skip


def _mac_int(text: str) -> int:
    return int(text.replace(":", ""), 16)


def test_port_macs_give_frames_without_vni_their_network() -> None:
    tm = tenant_map_from_dict(SHARED)
    assert tm.has_port_identities and not tenant_map_from_dict({"vpcs": SHARED["vpcs"][2:]}).has_port_identities
    rows = [  # (vni, src mac, src ip, dst mac, dst ip)
        (0, "02:02:0a:00:01:0a", "10.0.1.10", "02:00:00:00:00:01", "8.8.8.8"),  # globex-web sends
        (0, "02:00:00:00:00:01", "8.8.8.8", "02:01:0a:00:01:0a", "10.0.1.10"),  # acme-web receives
        (0, "02:02:0a:00:01:0a", "10.0.1.99", "02:02:0a:00:01:0b", "10.0.1.11"),  # not its address: the receiver's
        (0, "02:01:0a:00:01:0b", "10.0.1.11", "02:00:00:00:00:01", "8.8.8.8"),  # acme-db declares no MAC
        (7, "02:02:0a:00:01:0a", "10.0.1.10", "02:00:00:00:00:01", "8.8.8.8"),  # a VXLAN header's VNI stays
        (0, "02:00:ac:14:01:05", "172.20.1.5", "02:00:00:00:00:01", "8.8.8.8"),  # a flat network has none
    ]
    vni = tm.port_vnis(
        np.array([r[0] for r in rows], np.uint32),
        np.array([_mac_int(r[1]) for r in rows], np.uint64), ip16_from_text([r[2] for r in rows]),
        np.array([_mac_int(r[3]) for r in rows], np.uint64), ip16_from_text([r[4] for r in rows]),
    )  # fmt: skip
    assert vni.tolist() == [200, 100, 200, 0, 7, 0]
    got = names(tm, ["10.0.1.10", "10.0.1.10", "10.0.1.11", "10.0.1.11"], vni[:4].tolist())
    assert got == [("globex", "globex-web"), ("acme", "acme-web"), ("globex", "globex-db"), ("acme", "acme-db")]


def test_a_nic_with_several_addresses_is_several_ports_with_one_mac() -> None:
    nic = "02:05:0a:00:01:14"
    tm = tenant_map_from_dict({"vpcs": [
        {"id": "a", "tenant": "acme", "cidr": "10.0.0.0/16", "vni": 100, "subnets": [{"cidr": "10.0.1.0/24", "ports": [
            {"ip": "10.0.1.20", "vm": "acme-lb", "mac": nic}, {"ip": "10.0.1.21", "vm": "acme-lb", "mac": nic}]}]},
        {"id": "b", "tenant": "beta", "cidr": "10.0.0.0/16", "vni": 300, "subnets": [{"cidr": "10.0.1.0/24", "ports": [
            {"ip": "10.0.1.22", "vm": "beta-lb", "mac": nic}]}]},  # the same MAC in another network
    ]})  # fmt: skip
    ips = ["10.0.1.20", "10.0.1.21", "10.0.1.22", "10.0.1.23"]
    mac = np.full(len(ips), _mac_int(nic), np.uint64)
    zeros = np.zeros(len(ips), np.uint64)
    got = tm.port_vnis(np.zeros(len(ips), np.uint32), mac, ip16_from_text(ips), zeros, ip16_from_text(["8.8.8.8"] * 4))
    assert got.tolist() == [100, 100, 300, 0]
