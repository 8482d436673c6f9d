"""Render ``docs/features.md`` from the catalogue (``python -m netsentry.pipeline.features.docs`` rewrites it)."""

from __future__ import annotations

from pathlib import Path

from netsentry.pipeline.features.tenant.catalogue import DESCRIPTIVE_FEATURES, KEY_COLUMNS, TENANT_FEATURES

DOC = Path(__file__).resolve().parents[3] / "docs" / "features.md"

_INTRO = """# Feature catalogue

`netsentry features` writes two model-ready tables into `WORKSPACE/features/`:

- `tenant_windows`: one row per VM (entity) per sliding window (default 60 s, every 10 s), the compromise
  detector's input.
- `fault_windows`: one row per host, host pair, VM and capture point per window (default 1 s), the fault detector's
  input. Its catalogue is in [features-faults.md](features-faults.md).

Both carry `label` (1 labelled, 0 not, -1 ambiguous: left out of training and metrics) and `label_scenario` when
`--labels` is given.

## tenant_windows

How rows are made (`netsentry/pipeline/features/tenant/windows.py`, feature meanings in `catalogue.py`):

- Every flow counts for both endpoints: as an *outgoing* flow of the initiator and an *incoming* flow of the
  responder.
- Entities are the endpoints the tenant map knows (VMs). With no tenant map (a real capture of unknown hosts) every
  address is an entity, named by its address.
- Windows are `window_s` long and start every `hop_s` seconds on epoch-aligned boundaries. A flow belongs to every
  window it overlaps; its bytes and packets are spread over them in proportion to the overlap. Counts of *started*
  flows use the flow's first packet.
- Rates are per second or per minute of the *observed* part of the window (`observed_s`), so a 20 s capture and a
  10-minute one give comparable values.
- Each entity is read at one capture point: the one where its flows carry an overlay VNI (tenants reusing a CIDR are
  told apart only there), then the one with most of its flows (a VM tap, host uplink and gateway would otherwise
  count one connection thrice). Connections the entity began that never reached that point (to a VM on its own
  host; probes of empty addresses its virtual switch dropped) are added from the other points, once each (same
  5-tuple starting within 2 s at the main point: the same connection), when its address names one VM at the main
  points; a CIDR two tenants reuse cannot be told apart at a point without the VNI, so theirs are not.
- A guess is an exchange: `short_per_service_*` and `new_service_short_*` count short connections in which both
  ends sent application bytes. A client retrying a failing service (refused, or reset before any answer) makes
  many short connections to it too, and is a fault's side effect, not guessing.
- History features (`new_*`, `*_vs_baseline`) look only at the entity's earlier windows (no look-ahead).
- Features marked *descriptive* are kept for evidence and baselines but are not inputs of the compromise detector:
  they say which role a VM has more than whether it misbehaves.

Labels: a window is 1 when the observable part of a compromise label of its entity (tenant + VM name, else address)
overlaps it by at least min(hop, that part's duration), -1 when the label overlaps it by less, 0 otherwise. A label
is observable from its start, except a timer (`period_s=P` in its `detail`: a C2 beacon), which is observable from
its 4th gap (`BEACON_MIN_IATS` × P after its first check-in): before that its check-ins are single connections,
which `inspect` reports as "not judged", and no detector could tell them from any other.
"""


def render() -> str:
    """The whole of docs/features.md."""
    lines = [_INTRO, "Key columns: " + ", ".join(f"`{c}`" for c in KEY_COLUMNS) + ".", "",
             "| feature | meaning (unit) | model input |", "|---|---|---|"]  # fmt: skip
    for name, meaning in TENANT_FEATURES.items():
        role = "descriptive" if name in DESCRIPTIVE_FEATURES else "yes"
        lines.append(f"| `{name}` | {meaning.replace('|', '/')} | {role} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    """Rewrite docs/features.md."""
    DOC.write_text(render())


if __name__ == "__main__":
    main()
