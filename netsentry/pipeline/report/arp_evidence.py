"""The ARP part of an evidence card: who claimed an address (spoofing), or what a sweep asked for (scan)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from netsentry.pipeline.core import units
from netsentry.pipeline.inspect.findings import Finding
from netsentry.pipeline.report.markup import Cell, esc, table


def arp_table(f: Finding) -> str:
    """A table of the MACs claiming the address (``arp_spoofing``) or of the sweeping sender (``arp_scan``);
    '' for other findings. Every value came from packets, so every value is escaped."""
    ev: Mapping[str, Any] = f.evidence if isinstance(f.evidence, Mapping) else {}
    if f.type == "arp_spoofing":
        claimants = [c for c in ev.get("claimants", []) if isinstance(c, Mapping)]
        rows = [[Cell(f"<code>{esc(c.get('mac', '?'))}</code>"), Cell(f"<code>{esc(c.get('address', '?'))}</code>"),
                 Cell(esc(units.num(c.get("replies"))), numeric=True),
                 Cell(esc(units.num(c.get("gratuitous"))), numeric=True),
                 Cell(esc(units.utc(c.get("first_ns")))), Cell(esc(units.utc(c.get("last_ns"))))]
                for c in claimants]  # fmt: skip
        headers = [("MAC", False), ("Claims address", False), ("Replies", True), ("Gratuitous", True),
                   ("First (UTC)", False), ("Last (UTC)", False)]  # fmt: skip
        gateway = " (a gateway: asked for by several hosts)" if ev.get("gateway") else ""
        return table(
            headers, rows, cls="evidence-t", caption=f"MACs claiming the address, first claimant first{gateway}"
        )
    if f.type == "arp_scan":
        facts = [("Sender MAC", ev.get("mac")), ("Sender address", ev.get("address")), ("VNI", ev.get("vni")),
                 ("Targets within", ev.get("target_prefix")),
                 ("Bound (new targets per minute)", ev.get("bound"))]  # fmt: skip
        rows = [[Cell(esc(k)), Cell(f"<code>{esc(units.num(v) if isinstance(v, int) else v)}</code>")]
                for k, v in facts if v is not None]  # fmt: skip
        return table([("ARP sweep", False), ("Value", False)], rows, cls="evidence-t kv", caption="ARP sweep")
    return ""
