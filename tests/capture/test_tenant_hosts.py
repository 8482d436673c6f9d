"""Hosts in the tenant map: ports' ``host``, the ``gateway``, and the vectorised endpoint → host lookup."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from netsentry.pipeline.capture.tenants import (
    TenantMap,
    dump_tenant_map,
    load_tenant_map,
    router_hosts,
    tenant_map_from_dict,
)
from netsentry.pipeline.core.errors import ConfigError
from netsentry.pipeline.core.schemas import ip16_from_text
from netsentry.pipeline.simulate.cloud import GATEWAY_NAME, build_cloud
from netsentry.pipeline.simulate.scenario import load_scenario
from tests.paths import REPO

EXAMPLE = REPO / "configs" / "tenants.example.yaml"


def hosts(tmap: TenantMap, ips: list[str], vnis: list[int]) -> list[str]:
    arr = tmap.endpoint_hosts(np.array(vnis, dtype=np.uint32), ip16_from_text(ips))
    assert isinstance(arr, pa.DictionaryArray) and arr.type.index_type == pa.int32()
    return arr.cast(pa.string()).to_pylist()


def test_example_declares_hosts_and_gateway() -> None:
    tmap = load_tenant_map(EXAMPLE)
    assert tmap.gateway == "gateway" and tmap.hosts == ("host0", "host1", "gateway")
    got = hosts(
        tmap,
        ["10.0.1.10", "10.0.1.11", "10.0.1.10", "10.0.2.20", "10.0.9.9", "8.8.8.8", "2001:db8::1"],
        [1001, 1001, 2001, 1001, 1001, 0, 0],
    )
    # acme-web-1, acme-web-2 on their hosts; globex's 10.0.1.10 and acme-db-1 declare none: their address;
    # an address inside a VPC on no port: its address; external addresses: the gateway
    assert got == ["host0", "host1", "10.0.1.10", "10.0.2.20", "10.0.9.9", "gateway", "gateway"]


def test_a_subnets_router_address_is_on_the_gateway() -> None:
    doc = {"gateway": "gw", "vpcs": [{"id": "v", "cidr": "10.0.0.0/16", "subnets": [
        {"cidr": "10.0.1.0/24", "ports": [{"ip": "10.0.1.5", "vm": "a", "host": "hv1"}]},
        {"cidr": "10.0.2.0/24", "gateway_ip": "10.0.2.254", "ports": [{"ip": "10.0.2.1", "vm": "b", "host": "hv2"}]},
    ]}]}  # fmt: skip
    tmap = tenant_map_from_dict(doc)
    # the default router (first host address), a declared one, a VM on a first address, an address on no port
    got = hosts(tmap, ["10.0.1.1", "10.0.2.254", "10.0.2.1", "10.0.1.9", "10.0.3.1"], [0] * 5)
    assert got == ["gw", "gw", "hv2", "10.0.1.9", "10.0.3.1"]
    assert router_hosts(tmap) == {"10.0.1.1": "gw", "10.0.2.254": "gw"}
    assert router_hosts(tenant_map_from_dict({**doc, "gateway": None})) == {}  # no gateway host to put them on
    assert tmap.to_yaml_dict() == doc
    with pytest.raises(ConfigError, match=r"10\.0\.9\.1"):
        tenant_map_from_dict({"vpcs": [{"id": "v", "cidr": "10.0.0.0/16", "subnets": [
            {"cidr": "10.0.1.0/24", "gateway_ip": "10.0.9.1"}]}]})  # fmt: skip


def test_without_gateway_external_addresses_are_their_own_hosts() -> None:
    tmap = tenant_map_from_dict(
        {
            "vpcs": [
                {
                    "id": "v",
                    "cidr": "10.0.0.0/24",
                    "subnets": [{"cidr": "10.0.0.0/24", "ports": [{"ip": "10.0.0.5", "vm": "a", "host": "hv1"}]}],
                }
            ]
        }
    )
    assert tmap.gateway is None
    assert hosts(tmap, ["10.0.0.5", "1.2.3.4", "1.2.3.4"], [0, 0, 0]) == ["hv1", "1.2.3.4", "1.2.3.4"]


def test_no_map_gives_a_host_per_address() -> None:
    tmap = TenantMap.empty()
    assert hosts(tmap, ["10.0.0.1", "10.0.0.1", "fd00::1"], [0, 7, 0]) == ["10.0.0.1", "10.0.0.1", "fd00::1"]
    assert hosts(tmap, [], []) == []


def test_vectorised_over_many_rows() -> None:
    tmap = load_tenant_map(EXAMPLE)
    rng = np.random.default_rng(1)
    ips = np.array(["10.0.1.10", "10.0.1.11", "8.8.8.8", "10.0.2.20"])[rng.integers(0, 4, 100_000)]
    arr = tmap.endpoint_hosts(np.full(len(ips), 1001, np.uint32), ip16_from_text(list(ips)))
    want = {"10.0.1.10": "host0", "10.0.1.11": "host1", "8.8.8.8": "gateway", "10.0.2.20": "10.0.2.20"}
    np.testing.assert_array_equal(arr.cast(pa.string()).to_numpy(zero_copy_only=False), [want[i] for i in ips])


def test_files_without_hosts_load_as_before(tmp_path: Path) -> None:
    doc = {"vpcs": [{"id": "v", "cidr": "10.0.0.0/24", "subnets": [{"cidr": "10.0.0.0/24",
            "ports": [{"ip": "10.0.0.5", "vm": "a"}]}]}]}  # fmt: skip
    tmap = tenant_map_from_dict(doc)
    assert tmap.to_yaml_dict() == doc and tmap.hosts == () and tmap.gateway is None
    assert hosts(tmap, ["10.0.0.5"], [0]) == ["10.0.0.5"]


def test_round_trip_keeps_hosts_and_gateway(tmp_path: Path) -> None:
    tmap = load_tenant_map(EXAMPLE)
    dump_tenant_map(tmap, tmp_path / "t.yaml")
    back = load_tenant_map(tmp_path / "t.yaml")
    assert back.to_yaml_dict() == tmap.to_yaml_dict()
    assert back.hosts == tmap.hosts and back.gateway == "gateway"


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ({"gateway": ""}, "gateway"),
        ({"gateway": 3}, "gateway"),
        (
            {
                "vpcs": [
                    {
                        "id": "v",
                        "cidr": "10.0.0.0/24",
                        "subnets": [{"cidr": "10.0.0.0/24", "ports": [{"ip": "10.0.0.5", "vm": "a", "host": ""}]}],
                    }
                ]
            },
            "vpcs[0].subnets[0].ports[0].host",
        ),
    ],
)
def test_invalid_host_names(doc: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=field.replace("[", r"\[").replace("]", r"\]")):
        tenant_map_from_dict(doc)


def test_simulated_cloud_writes_hosts() -> None:
    sc = load_scenario(REPO / "configs" / "scenarios" / "demo.yaml")
    cloud = build_cloud(sc, np.random.default_rng(sc.seed))
    doc = cloud.tenants_yaml()
    assert doc["gateway"] == GATEWAY_NAME == "gateway"
    tmap = tenant_map_from_dict(doc)
    ips = [str(p.ip) for v in tmap.config.vpcs for s in v.subnets for p in s.ports]
    vni = [v.vni or 0 for v in tmap.config.vpcs for s in v.subnets for _ in s.ports]
    ip_to_vm = {f"{int(a) >> 24}.{(int(a) >> 16) & 255}.{(int(a) >> 8) & 255}.{int(a) & 255}": i
                for i, a in enumerate(cloud.ip)}  # fmt: skip
    assert hosts(tmap, ips, vni) == [cloud.host_name(int(cloud.host[ip_to_vm[ip]])) for ip in ips]
    assert hosts(tmap, ["93.184.216.34"], [0]) == ["gateway"]
