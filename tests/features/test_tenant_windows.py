"""Tenant windows: known answers on a hand-made flows table, window arithmetic, labels join."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from netsentry.pipeline.core.errors import InputNotFoundError, SchemaError
from netsentry.pipeline.core.schemas import ip16_array, ip16_from_text
from netsentry.pipeline.features.labels import label_tenant_windows, read_labels
from netsentry.pipeline.features.tenant.catalogue import TENANT_FEATURES
from netsentry.pipeline.features.tenant.windows import WindowSpec, tenant_windows

NS = 1_000_000_000
T0 = 1_767_621_600 * NS  # a multiple of 60 s


def flows_table(rows: list[dict]) -> pa.Table:
    """A flows table with just the columns tenant windows read."""
    df = pd.DataFrame(rows)

    def dict_col(name: str) -> pa.Array:
        return pa.array(df[name].tolist(), pa.string()).dictionary_encode()

    return pa.table(
        {
            "capture_point": dict_col("capture_point"),
            "vni": pa.array(df["vni"], pa.uint32()),
            "src_ip": ip16_array(ip16_from_text(df["src"].tolist())),
            "dst_ip": ip16_array(ip16_from_text(df["dst"].tolist())),
            "src_port": pa.array(df["sport"], pa.uint16()),
            "dst_port": pa.array(df["dport"], pa.uint16()),
            "protocol": pa.array(df["proto"], pa.uint8()),
            "src_tenant": dict_col("src_tenant"),
            "src_vm": dict_col("src_vm"),
            "dst_tenant": dict_col("dst_tenant"),
            "dst_vm": dict_col("dst_vm"),
            "first_seen_ns": pa.array(df["first"], pa.int64()),
            "last_seen_ns": pa.array(df["last"], pa.int64()),
            "src2dst_packets": pa.array(df["sp"], pa.uint64()),
            "dst2src_packets": pa.array(df["dp"], pa.uint64()),
            "src2dst_bytes": pa.array(df["sb"], pa.uint64()),
            "dst2src_bytes": pa.array(df["db"], pa.uint64()),
            "src2dst_payload_bytes": pa.array(df["spl"], pa.uint64()),
            "dst2src_payload_bytes": pa.array(df["dpl"], pa.uint64()),
            "conn_state": dict_col("state"),
            "end_reason": dict_col("end"),
        }
    )


def flow(src: str, dst: str, dport: int, start_s: float, dur_s: float = 1.0, *, proto: int = 6, state: str = "SF",
         sb: int = 100, db: int = 1000, sp: int = 2, dp: int = 3, point: str = "vm", end: str = "fin",
         tenants: dict[str, tuple[str, str]] | None = None, spl: int | None = None, dpl: int | None = None
         ) -> dict:  # fmt: skip
    """One flow row; payload bytes default to half of each side's bytes (none without packets or bytes)."""
    tenants = tenants or TENANTS
    spl = (sb // 2 if sp else 0) if spl is None else spl
    dpl = (db // 2 if dp else 0) if dpl is None else dpl
    st, sv = tenants.get(src, ("external", "external"))  # what the tenant map gives unknown addresses
    dt, dv = tenants.get(dst, ("external", "external"))
    return dict(capture_point=point, vni=0, src=src, dst=dst, sport=40000, dport=dport, proto=proto,
                src_tenant=st, src_vm=sv, dst_tenant=dt, dst_vm=dv, first=T0 + int(start_s * NS),
                last=T0 + int((start_s + dur_s) * NS), sp=sp, dp=dp, sb=sb, db=db, spl=spl, dpl=dpl, state=state,
                end=end)  # fmt: skip


TENANTS = {"10.0.0.1": ("acme", "acme-web-1"), "10.0.0.2": ("acme", "acme-db-1")}


def scenario() -> pa.Table:
    rows = [flow("10.0.0.1", "10.0.0.2", 22, s, state="S0" if s < 3 else "SF") for s in range(5)]
    rows += [flow("10.0.0.1", "8.8.8.8", 53, s, dur_s=0.0, proto=17, sb=80, sp=1, dp=1) for s in (1.0, 3.0)]
    rows.append(flow("10.0.0.1", "8.8.8.8", 53, 59.0, dur_s=1.0, proto=17, sb=80, sp=1, dp=1))  # ends the capture
    return flows_table(rows)


def row(tw: pd.DataFrame, vm: str, start_s: float = 0.0) -> pd.Series:
    hit = tw[(tw["vm"] == vm) & (tw["window_start_ns"] == T0 + int(start_s * NS))]
    assert len(hit) == 1, tw[["vm", "window_start_ns"]]
    return hit.iloc[0]


def test_known_answers_for_one_window() -> None:
    tw = tenant_windows(scenario(), WindowSpec(60, 60))
    assert set(tw["vm"]) == {"acme-web-1", "acme-db-1"}  # 8.8.8.8 is external: not an entity
    a = row(tw, "acme-web-1")
    assert a["tenant"] == "acme" and a["ip"] == "10.0.0.1" and a["scope"] == "acme/acme-web-1"
    assert a["observed_s"] == pytest.approx(60.0)
    assert a["flows_out_per_min"] == pytest.approx(8.0)
    assert a["remote_ips_out"] == 2 and a["service_ports_out"] == 2 and a["remote_24s_out"] == 2
    # 3 unanswered SYNs of 8 outgoing flows; the DNS queries were answered
    assert a["failed_ratio_out"] == pytest.approx(3 / 8) and a["failed_out_per_min"] == pytest.approx(3.0)
    assert a["short_per_service_out_per_min"] == pytest.approx(5.0)  # five 1-s connections to 10.0.0.2:22
    assert a["sensitive_share_out"] == pytest.approx(5 / 8)
    assert a["max_flows_per_service_out"] == 5 and a["max_ports_per_remote_out"] == 1
    assert a["flows_per_service_out"] == pytest.approx(8 / 2)
    p = np.array([5 / 8, 3 / 8])
    assert a["remote_ip_entropy_out"] == pytest.approx(float(-(p * np.log2(p)).sum()))
    assert a["dns_queries_per_min"] == pytest.approx(3.0) and a["dns_query_mean_bytes"] == pytest.approx(80.0)
    assert a["udp_share_out"] == pytest.approx(3 / 8)
    assert a["bytes_sent_per_s"] == pytest.approx((5 * 100 + 3 * 80) / 60)
    assert a["bytes_sent_share"] == pytest.approx((5 * 100 + 3 * 80) / (5 * 1100 + 3 * 1080))
    assert a["flows_in_per_min"] == 0 and a["remote_ips_in"] == 0
    b = row(tw, "acme-db-1")
    assert b["flows_in_per_min"] == pytest.approx(5.0) and b["remote_ips_in"] == 1 and b["local_ports_in"] == 1
    assert b["failed_ratio_in"] == pytest.approx(3 / 5) and b["sensitive_share_in"] == 1.0
    assert b["max_flows_per_service_in"] == 5 and b["max_remotes_per_port_in"] == 1
    assert list(tw.columns[8:]) == list(TENANT_FEATURES)


def test_unanswered_udp_and_icmp_fail_and_a_ping_sweep_is_one_service() -> None:
    """A ping sweep of 20 hosts (each echo with its own identifier as the flow's 'port') and 10 unanswered UDP
    probes: 30 failed flows, one ICMP service reaching 20 hosts; a broadcast nobody answers is no failure."""
    rows = [flow("10.0.0.1", f"10.0.9.{i}", 1000 + i, 0.1 * (i - 1), dur_s=0.0, proto=1, sp=1, dp=0, state="S0")
            for i in range(1, 21)]  # fmt: skip
    rows += [flow("10.0.0.1", f"10.0.8.{i}", 40125, 5 + 0.1 * i, dur_s=0.0, proto=17, sp=1, dp=0, state="S0")
             for i in range(1, 11)]  # fmt: skip
    rows.append(flow("10.0.0.1", "10.0.0.255", 137, 8.0, dur_s=0.0, proto=17, sp=1, dp=0, state="S0"))
    rows.append(flow("10.0.0.1", "10.0.0.2", 443, 59.0, dur_s=1.0))  # answered; ends the capture
    a = row(tenant_windows(flows_table(rows), WindowSpec(60, 60)), "acme-web-1")
    assert a["failed_out_per_min"] == pytest.approx(30.0)
    assert a["failed_ratio_out"] == pytest.approx(30 / 32)
    assert a["max_remotes_per_port_out"] == 20  # ICMP echo: one service, not 20 'ports'
    assert a["max_ports_per_remote_out"] == 1


def test_reflected_replies_count_sources_per_remote_service_port() -> None:
    """50 reflectors answering from udp/53 to random ports of acme-web-1 (never asked) vs 5 clients of its web port."""
    rows = []
    for i in range(50):
        r = flow(f"198.51.100.{i}", "10.0.0.1", 30000 + i, 0.5 * i, dur_s=0.0, proto=17, sp=1, dp=0, state="S0",
                 sb=3000)  # fmt: skip
        r["sport"] = 53
        rows.append(r)
    rows += [flow(f"203.0.113.{i}", "10.0.0.1", 443, 1.0 + i) for i in range(5)]
    rows.append(flow("10.0.0.1", "10.0.0.2", 443, 59.0, dur_s=1.0))
    a = row(tenant_windows(flows_table(rows), WindowSpec(60, 60)), "acme-web-1")
    assert a["max_remotes_per_remote_port_in"] == 50
    assert a["max_remotes_per_port_in"] == 5  # each reflected reply lands on its own local port


def test_large_dns_a_resolver_relays_is_not_originated() -> None:
    """acme-web-1 tunnels through the acme-db-1 resolver (which forwards): only acme-web-1 originates large names."""
    rows = [flow("10.0.0.1", "10.0.0.2", 53, s, dur_s=0.1, proto=17, sb=250, sp=1, dp=1) for s in range(10)]
    rows += [flow("10.0.0.2", "8.8.8.8", 53, s + 0.05, dur_s=0.1, proto=17, sb=261, sp=1, dp=1) for s in range(10)]
    rows.append(flow("10.0.0.2", "8.8.8.8", 53, 59.0, dur_s=1.0, proto=17, sb=300, sp=1, dp=1))  # ends the capture
    tw = tenant_windows(flows_table(rows), WindowSpec(60, 60))
    client, resolver = row(tw, "acme-web-1"), row(tw, "acme-db-1")
    assert client["dns_large_queries_per_min"] == pytest.approx(10.0)
    assert client["dns_large_originated_per_min"] == pytest.approx(10.0)
    assert resolver["dns_large_queries_per_min"] == pytest.approx(11.0)
    assert resolver["dns_large_originated_per_min"] == pytest.approx(1.0)


def test_short_sensitive_flows_ended_on_their_own() -> None:
    """Guesses are connections that ended within 30 s; one the capture cut while open is a session of unknown length
    (as smb2.pcap's one SMB session in a 0.4 s capture), and an unanswered SYN at the capture's end is still a probe."""
    rows = [flow("10.0.0.1", "10.0.0.2", 22, s, dur_s=3.0) for s in (0, 5, 10)]  # three guesses
    rows.append(flow("10.0.0.1", "10.0.0.2", 22, 20.0, dur_s=40.0))  # a session
    rows.append(flow("10.0.0.1", "10.0.0.2", 3389, 50.0, dur_s=0.4, state="S1", end="eof"))  # cut by the capture
    rows.append(flow("10.0.0.1", "10.0.0.2", 22, 59.0, dur_s=1.0, state="S0", end="eof"))  # a probe never answered
    a = row(tenant_windows(flows_table(rows), WindowSpec(60, 60)), "acme-web-1")
    assert a["sensitive_out_per_min"] == pytest.approx(6.0)
    assert a["short_sensitive_out_per_min"] == pytest.approx(4.0)


def test_idle_persistent_needs_an_established_connection() -> None:
    """A held-open connection with a message every 10 s counts; SYNs retried for 70 s to a silent host do not."""
    rows = [
        flow("10.0.0.1", "8.8.4.4", 3333, 0.0, dur_s=130.0, sp=7, dp=7, end="eof"),  # 14 packets, ~10 s apart
        flow("10.0.0.1", "8.8.8.8", 443, 0.0, dur_s=70.0, state="S0", sp=7, dp=0, end="idle"),
        flow("10.0.0.1", "10.0.0.2", 80, 125.0, dur_s=5.0),  # ends the capture after the window of interest
    ]
    a = row(tenant_windows(flows_table(rows), WindowSpec(60, 60)), "acme-web-1", 60.0)
    assert a["persistent_flows_out"] == 2 and a["idle_persistent_flows_out"] == 1


def test_sliding_windows_and_volume_spread() -> None:
    """A 20 s flow over 10 s hops lands in every window it overlaps, its bytes split by overlap."""
    rows = [
        flow("10.0.0.1", "10.0.0.2", 5432, 25.0, dur_s=20.0, sb=2000, db=0),
        flow("10.0.0.1", "10.0.0.2", 5432, 0.0, dur_s=0.0),
        flow("10.0.0.1", "10.0.0.2", 5432, 100.0, 0.0),
    ]
    tw = tenant_windows(flows_table(rows), WindowSpec(20, 10))
    a = tw[tw["vm"] == "acme-web-1"].set_index("window_start_ns")
    ws = lambda s: T0 + s * NS  # noqa: E731
    # windows [10,30) [20,40) [30,50) [40,60) overlap [25,45): 5, 15, 15, 5 seconds of the flow
    for start, share in ((10, 5 / 20), (20, 15 / 20), (30, 15 / 20), (40, 5 / 20)):
        assert a.loc[ws(start), "bytes_sent_per_s"] == pytest.approx(2000 * share / 20), start
    assert a.loc[ws(20), "flows_out_per_min"] == pytest.approx(3.0)  # started in [20, 40): one flow in 20 s
    assert a.loc[ws(40), "flows_out_per_min"] == 0.0  # active, not started
    assert ws(60) not in a.index  # no flow overlaps [60, 80)


def test_undeclared_addresses_inside_a_vpc_are_not_entities() -> None:
    tenants = {**TENANTS, "10.0.0.77": ("acme", "unknown")}  # a scanned, empty slot of the VPC
    rows = [flow("10.0.0.1", "10.0.0.77", 22, s, state="S0", tenants=tenants) for s in range(5)]
    tw = tenant_windows(flows_table(rows), WindowSpec(60, 60))
    assert set(tw["vm"]) == {"acme-web-1"}


def test_entities_without_a_tenant_map_are_addresses() -> None:
    rows = [flow("192.168.56.1", "192.168.56.103", 22, s, tenants={}) for s in range(11)]
    tw = tenant_windows(flows_table(rows), WindowSpec(60, 10))
    assert set(tw["ip"]) == {"192.168.56.1", "192.168.56.103"}
    assert set(tw["tenant"]) == {"external"} and set(tw["vm"]) == {"192.168.56.1", "192.168.56.103"}
    assert tw[tw["ip"] == "192.168.56.1"]["max_flows_per_service_out"].max() == 11


def test_beacon_score_separates_a_timer_from_poisson() -> None:
    rng = np.random.default_rng(1)
    timer = np.cumsum(30 * (1 + 0.1 * (2 * rng.random(12) - 1)))
    poisson = np.cumsum(rng.exponential(30, 12))
    tenants = {**TENANTS, "10.0.0.3": ("acme", "acme-app-1")}
    rows = [flow("10.0.0.1", "1.2.3.4", 443, s, 0.5) for s in timer]
    rows += [flow("10.0.0.3", "1.2.3.4", 443, s, 0.5, tenants=tenants) for s in poisson]
    tw = tenant_windows(flows_table(rows), WindowSpec(60, 60))
    best = tw.groupby("vm")["beacon_score_out"].max()
    assert best["acme-web-1"] > 0.7 and best["acme-app-1"] < 0.3


def test_main_capture_point_prefers_the_one_with_vni() -> None:
    rows = [{**flow("10.0.0.1", "10.0.0.2", 80, s, point="vm"), "sport": 40000 + s} for s in range(6)]
    rows += [{**flow("10.0.0.1", "10.0.0.2", 80, s, point="host"), "vni": 5001, "sport": 40000 + s} for s in range(3)]
    tw = tenant_windows(flows_table(rows), WindowSpec(60, 60))
    assert set(tw["capture_point"]) == {"host"}
    assert row(tw, "acme-web-1")["active_flows"] == 6  # 3 at the host, and 3 only its tap saw


def test_empty_and_bad_input() -> None:
    empty = tenant_windows(scenario().slice(0, 0))
    assert empty.empty and list(empty.columns[8:]) == list(TENANT_FEATURES)
    with pytest.raises(SchemaError, match="lacks column"):
        tenant_windows(scenario().drop_columns(["conn_state"]))
    with pytest.raises(SchemaError, match="hop"):
        WindowSpec(10, 20)


def test_every_feature_is_documented() -> None:
    from netsentry.pipeline.features.docs import DOC, render

    doc = DOC.read_text()
    assert doc == render(), "docs/features.md is stale: run `python -m netsentry.pipeline.features.docs`"
    for name, meaning in TENANT_FEATURES.items():
        assert f"`{name}`" in doc, name
        assert "(" in meaning and meaning.rstrip().endswith(")"), f"{name}: unit missing in {meaning!r}"


LABELS = """kind,scenario,scope_type,scope,start,end,start_ns,end_ns,tenant,vm,vni,detail
compromise,ssh_bruteforce,vm,10.0.0.1,a,b,{s},{e},acme,acme-web-1,0,x
compromise,port_scan_vertical,vm,192.168.56.1,a,b,{s2},{e2},,,0,
fault,loss_burst,host,host3,a,b,{s},{e},,,0,
"""


def test_labels_join_by_vm_name_or_address(tmp_path: Path) -> None:
    p = tmp_path / "labels.csv"
    p.write_text(LABELS.format(s=T0 + 55 * NS, e=T0 + 75 * NS, s2=T0, e2=T0 + 5 * NS))
    labels = read_labels(p)
    rows = [flow("10.0.0.1", "10.0.0.2", 22, s) for s in range(0, 120, 5)]
    tw = label_tenant_windows(tenant_windows(flows_table(rows), WindowSpec(60, 10)), labels, hop_s=10)
    a = tw[tw["vm"] == "acme-web-1"].set_index("window_start_ns")
    # label [55, 75): windows (60 s, every 10 s, the last starting at 60 s) overlapping it by >= 10 s are 1;
    # [0, 60) overlaps it by 5 s only: ambiguous
    assert list(a.index) == [T0 + s * NS for s in range(0, 70, 10)]
    assert a.loc[T0, "label"] == -1 and (a["label"].iloc[1:] == 1).all()
    assert a.loc[T0 + 20 * NS, "label_scenario"] == "ssh_bruteforce" and a.loc[T0, "label_scenario"] == ""
    assert (tw[tw["vm"] == "acme-db-1"]["label"] == 0).all()  # the victim is not labelled by the attacker's label
    real = [flow("192.168.56.1", "9.9.9.9", 22, s, tenants={}) for s in range(0, 120, 5)]  # no tenant map
    tw = label_tenant_windows(tenant_windows(flows_table(real), WindowSpec(60, 10)), labels, hop_s=10)
    b = tw[tw["ip"] == "192.168.56.1"].set_index("window_start_ns")
    assert b.loc[T0, "label"] == 1  # a 5 s label needs 5 s of overlap
    assert b.loc[T0 + 10 * NS, "label"] == 0


def test_beacon_label_counts_from_its_first_judgeable_gap(tmp_path: Path) -> None:
    p = tmp_path / "labels.csv"
    beacon = "c2=9.9.9.9:443 period_s=15 jitter=0.1 beacons=10"
    p.write_text(LABELS.format(s=T0, e=T0 + 150 * NS, s2=0, e2=1).replace(",x\n", f",{beacon}\n", 1))
    rows = [flow("10.0.0.1", "9.9.9.9", 443, s) for s in range(0, 150, 15)]
    tw = label_tenant_windows(tenant_windows(flows_table(rows), WindowSpec(60, 10)), read_labels(p), hop_s=10)
    a = tw[tw["vm"] == "acme-web-1"].set_index("window_start_ns")["label"]
    # four gaps of 15 s make the timer judgeable at 60 s: [0, 60) sees none of that part, [10, 70) a hop of it
    assert a.loc[T0] == -1 and (a.loc[T0 + 10 * NS :] == 1).all() and len(a) == 9
    short = beacon.replace("period_s=15", "period_s=60")  # 4 gaps of 60 s outlast the label: never judgeable
    p.write_text(LABELS.format(s=T0, e=T0 + 150 * NS, s2=0, e2=1).replace(",x\n", f",{short}\n", 1))
    tw = label_tenant_windows(tenant_windows(flows_table(rows), WindowSpec(60, 10)), read_labels(p), hop_s=10)
    assert set(tw.loc[tw["vm"] == "acme-web-1", "label"]) == {-1}


def test_labels_file_errors(tmp_path: Path) -> None:
    with pytest.raises(InputNotFoundError):
        read_labels(tmp_path / "nope.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("kind,scope\ncompromise,x\n")
    with pytest.raises(SchemaError, match=r"bad\.csv.*lack"):
        read_labels(bad)
    bad.write_text(LABELS.format(s="soon", e=1, s2=1, e2=2))
    with pytest.raises(SchemaError, match=r"line 2.*start_ns"):
        read_labels(bad)


def test_rates_divide_by_the_span_the_capture_covers() -> None:
    # masscan-like: 1001 SYNs to distinct ports in 10 s, the whole capture
    rows = [flow("10.0.0.1", "198.51.100.7", p, p * 0.01, dur_s=0.0, state="S0", sp=1, dp=0, db=0) for p in range(1001)]
    tw = tenant_windows(flows_table(rows), WindowSpec(60, 10))
    a = row(tw, "acme-web-1")
    assert a["observed_s"] == pytest.approx(10.0)
    assert a["flows_out_per_min"] == pytest.approx(1001 * 6.0)
    assert a["failed_out_per_min"] == pytest.approx(1001 * 6.0)


def test_observed_span_has_a_one_second_floor() -> None:
    # three connections within 0.2 s: one second of exposure, not 0.2 s (and not 30 s)
    rows = [flow("10.0.0.1", "10.0.0.2", 22, s, dur_s=0.0) for s in (0.0, 0.1, 0.2)]
    a = row(tenant_windows(flows_table(rows), WindowSpec(60, 10)), "acme-web-1")
    assert a["observed_s"] == pytest.approx(1.0)
    assert a["flows_out_per_min"] == pytest.approx(180.0)


def test_a_session_to_a_server_only_one_vm_knows_is_solo_a_shared_one_is_not() -> None:
    """Both VMs hold a session to 1.1.1.1; acme-web-1 also holds one to 6.6.6.6 (its pool): only that is solo."""
    rows = [flow(src, "1.1.1.1", 443, 0.0, dur_s=170.0) for src in ("10.0.0.1", "10.0.0.2")]
    rows.append(flow("10.0.0.1", "6.6.6.6", 3333, 0.0, dur_s=170.0, sb=50_000, db=30_000))
    tw = tenant_windows(flows_table(rows), WindowSpec(60, 60))
    web, db = row(tw, "acme-web-1", 60.0), row(tw, "acme-db-1", 60.0)
    assert web["persistent_flows_out"] == 2 and db["persistent_flows_out"] == 1
    assert web["solo_persistent_flows_out"] == 1 and db["solo_persistent_flows_out"] == 0
    assert web["solo_persistent_bytes_per_s_out"] == pytest.approx(80_000 * 60 / 170 / 60)


def test_without_a_tenant_map_no_remote_is_solo() -> None:
    """Which addresses are our hosts is unknown without a tenant map: solo says nothing (0)."""
    no_map = {"192.0.2.1": ("external", "external")}  # a map that knows none of these addresses
    rows = [flow(src, "6.6.6.6", 3333, 0.0, dur_s=170.0, tenants=no_map) for src in ("10.0.0.1",)]
    rows.append(flow("10.0.0.2", "1.1.1.1", 443, 0.0, dur_s=170.0, tenants=no_map))
    tw = tenant_windows(flows_table(rows), WindowSpec(60, 60))
    web = tw[(tw["ip"] == "10.0.0.1") & (tw["window_start_ns"] == T0 + 60 * NS)].iloc[0]
    assert web["persistent_flows_out"] == 1 and web["solo_persistent_flows_out"] == 0


def test_a_check_in_begun_lately_is_a_new_beacon_a_timer_from_the_start_is_not() -> None:
    """acme-web-1 polls 1.1.1.1 every 10 s from the start; from 120 s it also checks in with 6.6.6.6 every 10 s."""
    rows = [flow("10.0.0.1", "1.1.1.1", 443, 10.0 * k, dur_s=0.5) for k in range(25)]
    rows += [flow("10.0.0.1", "6.6.6.6", 8443, 120.0 + 10.0 * k + 3, dur_s=0.5) for k in range(12)]
    tw = tenant_windows(flows_table(rows), WindowSpec(60, 60))
    before, after = row(tw, "acme-web-1", 60.0), row(tw, "acme-web-1", 180.0)
    assert before["beacon_score_out"] > 0.9 and before["new_beacon_score_out"] == 0.0
    assert after["new_beacon_score_out"] > 0.9


def test_short_connections_to_a_service_begun_lately_count_steady_ones_do_not() -> None:
    """acme-web-1 talks to its database every 2 s from the start; at 120 s it starts guessing at 203.0.113.7:2121
    (20 short connections in a minute): only the guessing is at a new service."""
    rows = [flow("10.0.0.1", "10.0.0.2", 5432, 2.0 * k, dur_s=0.2) for k in range(95)]
    rows += [flow("10.0.0.1", "203.0.113.7", 2121, 120.0 + 3.0 * k, dur_s=1.0, sb=60, db=90) for k in range(20)]
    tw = tenant_windows(flows_table(rows), WindowSpec(60, 60))
    early, late = row(tw, "acme-web-1", 60.0), row(tw, "acme-web-1", 120.0)
    assert early["short_per_service_out_per_min"] == pytest.approx(30.0)  # the database, 30 a minute
    assert early["new_service_short_out_per_min"] == 0.0
    assert late["new_service_short_out_per_min"] == pytest.approx(20.0)
    assert row(tw, "acme-web-1", 0.0)["new_service_short_out_per_min"] == 0.0  # no history yet: not judged new


def test_a_guess_is_an_exchange_a_refused_or_unanswered_retry_is_not() -> None:
    """acme-web-1 retries a failing service 20 times in a minute, its requests reset before any answer, then makes 12
    short connections the service answers: only those are repeated guesses."""
    rows = [flow("10.0.0.1", "203.0.113.7", 5432, 1.0 * k, dur_s=0.1, sb=300, db=60, dp=1, dpl=0) for k in range(20)]
    rows += [flow("10.0.0.1", "203.0.113.7", 5432, 30.0 + k, dur_s=0.5) for k in range(12)]
    tw = tenant_windows(flows_table(rows), WindowSpec(60, 60))
    web = row(tw, "acme-web-1")
    assert web["short_per_service_out_per_min"] * web["observed_s"] / 60 == pytest.approx(12.0)  # of the capture span


def test_answered_connections_that_say_nothing_repeat_to_one_service() -> None:
    """An internet host opens 300 connections a minute to acme-web-1's port 80, each answered and reset without a
    byte (hping3's SYN flood from a real kernel); 4 health checks a minute reach acme-db-1's port 5432; one client's
    requests, which carry bytes, and unanswered SYNs are neither; what acme-db-1 sends so is no incoming flood."""
    rows = [flow(a, b, port, 0.2 * k, dur_s=0.001, state="RSTO", sp=2, dp=1, spl=0, dpl=0) for k in range(300)
            for a, b, port in (("203.0.113.9", "10.0.0.1", 80), ("10.0.0.2", "203.0.113.5", 443))]  # fmt: skip
    rows += [flow("203.0.113.8", "10.0.0.2", 5432, 15.0 * k, dur_s=0.01, sp=3, dp=2, spl=0, dpl=0) for k in range(4)]
    rows += [flow("203.0.113.7", "10.0.0.1", 80, 1.0 * k, dur_s=0.5) for k in range(20)]
    rows += [flow("203.0.113.6", "10.0.0.2", 22, 2.0 * k, dur_s=0.0, state="S0", dp=0) for k in range(20)]
    tw = tenant_windows(flows_table(rows), WindowSpec(60, 60))

    def count(vm: str) -> float:  # the rate over the capture's span, back to a count
        r = row(tw, vm)
        return float(r["wordless_per_service_in_per_min"] * r["observed_s"] / 60)

    assert count("acme-web-1") == pytest.approx(300.0) and count("acme-db-1") == pytest.approx(4.0)


def test_a_vm_is_read_at_its_main_point_plus_what_it_sent_that_never_reached_it() -> None:
    """acme-web-1's flows at the host uplink (VNI 5001), and at its tap: the same flows, plus 4 probes to empty
    addresses its virtual switch dropped and a connection to a VM on its host. The tap adds those 5, once each;
    the same address in two tenants (10.0.0.2) is never borrowed: the tap cannot tell them apart."""
    two = {**TENANTS, "10.0.0.3": ("acme", "acme-app-1")}
    host = [{**flow("10.0.0.1", "8.8.8.8", 443, s, tenants=two, point="host"), "vni": 5001} for s in range(6)]
    host += [{**flow("10.0.0.2", "8.8.8.8", 443, s, tenants=two, point="host"), "vni": 5001} for s in range(2)]
    host += [{**flow("10.0.0.2", "8.8.8.8", 443, s, tenants={"10.0.0.2": ("globex", "globex-db-1")}, point="host"),
              "vni": 5002} for s in range(2)]  # fmt: skip
    tap = [flow("10.0.0.1", "8.8.8.8", 443, s + 0.001, tenants=two) for s in range(6)]
    tap += [flow("10.0.0.1", f"10.0.0.{9 + k}", 0, 10.0 + k, proto=1, state="S0", db=0, dp=0, tenants=two)
            for k in range(4)]  # fmt: skip
    tap += [flow("10.0.0.1", "10.0.0.3", 8080, 20.0, tenants=two)]
    tap += [flow("10.0.0.2", "10.0.0.9", 0, 30.0, proto=1, state="S0", db=0, dp=0, tenants=two)]
    tw = tenant_windows(flows_table(host + tap), WindowSpec(60, 60))
    web = row(tw, "acme-web-1")
    assert web["capture_point"] == "host"
    assert web["active_flows"] == 6 + 4 + 1
    assert web["failed_out_per_min"] * web["observed_s"] / 60 == pytest.approx(4.0)
    assert row(tw, "acme-db-1")["active_flows"] == 2  # 10.0.0.2 is globex-db-1 too: its tap flows are not kept


def test_broadcast_and_multicast_addresses_are_never_entities() -> None:
    """mDNS to 224.0.0.251 and NetBIOS to x.x.x.255 from a host without a tenant map: only the host is an entity."""
    no_map = {"192.0.2.1": ("external", "external")}
    rows = [flow("10.9.0.5", "224.0.0.251", 5353, 1.0 * k, dur_s=0.0, proto=17, dp=0, tenants=no_map) for k in range(5)]
    rows += [flow("10.9.0.5", "10.9.0.255", 137, 2.0 * k, dur_s=0.0, proto=17, dp=0, tenants=no_map) for k in range(5)]
    tw = tenant_windows(flows_table(rows), WindowSpec(60, 60))
    assert set(tw["ip"]) == {"10.9.0.5"}
