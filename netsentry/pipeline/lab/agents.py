"""Programs the lab runs inside its namespaces (``python -m netsentry.pipeline.lab.agents ROLE ...``): a VM's
everyday client and an implant's beacon. Real sockets through the namespace's kernel; stdlib only.

- ``client SEED PERIOD_S TIMER_S PEERS EXTERNAL``: requests to peers (comma-separated addresses) and internet hosts at
  Poisson times of mean PERIOD_S — pages, now and then a bulk download, a connection to a closed port (refused) —
  and a fixed-period timer (a connectivity check every TIMER_S to the first internet host);
- ``beacon ADDRESS PERIOD_S JITTER``: one small request to ADDRESS every PERIOD_S·(1 ± JITTER).
"""

from __future__ import annotations

import contextlib
import random
import socket
import sys
import threading
import time
import urllib.error
import urllib.request

PAGES = ("small.bin", "page.bin")
BULK = "bulk.bin"
CLOSED_PORT = 81


def fetch(url: str, timeout: float = 3.0) -> None:
    """GET ``url`` and read the answer; failures (refused, timed out) are part of everyday traffic."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            r.read()
    except (urllib.error.URLError, OSError, TimeoutError):
        pass


def refused(address: str) -> None:
    """Try a port nobody listens on (answered by a RST)."""
    with contextlib.suppress(OSError):
        socket.create_connection((address, CLOSED_PORT), timeout=2.0).close()


def timer(address: str, period_s: float) -> None:
    while True:
        fetch(f"http://{address}/small.bin")
        time.sleep(period_s)


def client(seed: int, period_s: float, timer_s: float, peers: list[str], external: list[str]) -> None:
    rng = random.Random(seed)
    if external and timer_s > 0:
        threading.Thread(target=timer, args=(external[0], timer_s), daemon=True).start()
    while True:
        time.sleep(rng.expovariate(1.0 / period_s))
        u = rng.random()
        if u < 0.6 and peers:
            fetch(f"http://{rng.choice(peers)}/{rng.choice(PAGES)}")
        elif u < 0.85 and external:
            fetch(f"http://{rng.choice(external)}/{rng.choice(PAGES)}")
        elif u < 0.93:
            fetch(f"http://{rng.choice(peers or external)}/{BULK}", timeout=10.0)
        else:
            refused(rng.choice(peers or external))


def beacon(address: str, period_s: float, jitter: float) -> None:
    while True:
        fetch(f"http://{address}/small.bin")
        time.sleep(period_s * (1.0 + jitter * (2.0 * random.random() - 1.0)))


def main(argv: list[str]) -> None:
    role, args = argv[0], argv[1:]
    if role == "client":
        split = [a.split(",") if a else [] for a in args[3:5]]
        client(int(args[0]), float(args[1]), float(args[2]), split[0], split[1])
    elif role == "beacon":
        beacon(args[0], float(args[1]), float(args[2]))
    else:
        raise SystemExit(f"unknown agent role {role!r}: client or beacon")


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):  # the lab stops its agents with SIGINT
        main(sys.argv[1:])
