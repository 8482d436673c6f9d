"""Compromise behaviours: what a compromised VM (or an attacker aiming at one) adds to the traffic.

Each generator is registered with :func:`~netsentry.pipeline.simulate.events.compromise` under the name a
scenario's event ``type`` uses when this package is imported, and returns the connections it makes (one
vectorised :meth:`ConnTable.make` per behaviour) and one :class:`Label` for the VM over the interval it is
active. All randomness comes from ``ctx.rng``: the same seed gives the same connections.

Calibration against real traces (``../shared/data``): nmap's SYN scan of 1,000 ports of an
internet host drew 17 replies and retransmitted each unanswered probe once (1,994 SYNs in 23 s);
an SSH password guesser made 11 connections in 70 s.
"""

from netsentry.pipeline.simulate.attacks import bruteforce, floods, intrusion, outbound, reflection, scans, sweeps

__all__ = ["bruteforce", "floods", "intrusion", "outbound", "reflection", "scans", "sweeps"]
