"""Programs the lab runs inside its namespaces (``python -m netsentry.pipeline.lab.agents ROLE ...``): a VM's
web server and everyday client, an implant's beacon, traffic through a DNS tunnel. Real sockets through the
namespace's kernel; stdlib only.

- ``web DIRECTORY``: HTTP on port 80 serving DIRECTORY's files, taking uploads (POST), and asking for a password
  under ``/admin/`` that it never accepts (HTTP basic auth: what hydra's ``http-get`` guesses at);
- ``client SEED PERIOD_S TIMER_S PEERS EXTERNAL RESOLVER SSH_KEY``: requests to peers and internet hosts (names,
  comma-separated, looked up at RESOLVER before each connection as a stub resolver without a cache does) at Poisson
  times of mean PERIOD_S — pages, now and then a bulk download, an SSH login with SSH_KEY running one command, a
  connection to a closed port (refused) — and a fixed-period timer (a connectivity check every TIMER_S to the
  first internet host);
- ``checker PERIOD_S ADDRESSES``: a load balancer's health checks: a bare connect to port 80 of each address
  (comma-separated) every PERIOD_S, closed at once with a reset, as HAProxy's and network load balancers' TCP
  checks do;
- ``beacon ADDRESS PERIOD_S JITTER``: one small request to ADDRESS every PERIOD_S·(1 ± JITTER);
- ``tunnel ADDRESS PERIOD_S``: an implant's transfers through a tunnel to ADDRESS: alternately a page down and a
  file up, every PERIOD_S.
"""

from __future__ import annotations

import contextlib
import os
import random
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

PAGES = ("small.bin", "page.bin")
BULK = "bulk.bin"
CLOSED_PORT = 81
UPLOAD_BYTES = 20_000
SSH_OPTIONS = ("-F", "/dev/null", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o",
               "UserKnownHostsFile=/dev/null", "-o", "IdentitiesOnly=yes", "-o", "LogLevel=ERROR")  # fmt: skip
"""How the lab's ssh clients run: no user config, no prompts, no host-key bookkeeping."""


class WebHandler(SimpleHTTPRequestHandler):
    """Files, uploads, and an ``/admin/`` that asks for a password (HTTP basic auth) and accepts none."""

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        if self.path.startswith("/admin"):
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="admin"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        super().do_GET()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(204)
        self.end_headers()


def web(directory: str) -> None:
    ThreadingHTTPServer(("0.0.0.0", 80), partial(WebHandler, directory=directory)).serve_forever()


def _query(name: str) -> bytes:
    """A recursive DNS query for ``name``'s A record."""
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split("."))
    header = struct.pack(">HHHHHH", random.getrandbits(16), 0x0100, 1, 0, 0, 0)
    return header + labels + b"\0" + struct.pack(">HH", 1, 1)


def _skip_name(data: bytes, i: int) -> int:
    while i < len(data):
        if data[i] >= 0xC0:
            return i + 2
        if data[i] == 0:
            return i + 1
        i += data[i] + 1
    raise ValueError("truncated name")


def lookup(name: str, resolver: str, timeout: float = 2.0) -> str | None:
    """``name``'s first IPv4 address as ``resolver`` answers (None when it does not, or has none)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(timeout)
            s.sendto(_query(name), (resolver, 53))
            data = s.recv(1500)
        answers = struct.unpack(">H", data[6:8])[0]
        i = _skip_name(data, 12) + 4
        for _ in range(answers):
            i = _skip_name(data, i)
            rtype, _, _, size = struct.unpack(">HHIH", data[i : i + 10])
            if rtype == 1 and size == 4:
                return socket.inet_ntoa(data[i + 10 : i + 14])
            i += 10 + size
    except (OSError, ValueError, struct.error):
        return None
    return None


def resolve(name: str, resolver: str) -> str | None:
    """``name`` itself without a resolver, else its address."""
    return lookup(name, resolver) if resolver else name


def ssh_login(address: str, key: str) -> None:
    """Log in with ``key`` and run the one command the key is allowed (an admin's or a deploy tool's check)."""
    with contextlib.suppress(OSError, subprocess.TimeoutExpired):
        subprocess.run(["ssh", *SSH_OPTIONS, "-i", key, "-o", "ConnectTimeout=3", f"root@{address}"],
                       capture_output=True, timeout=15)  # fmt: skip


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


def timer(name: str, period_s: float, resolver: str) -> None:
    while True:
        address = resolve(name, resolver)
        if address:
            fetch(f"http://{address}/small.bin")
        time.sleep(period_s)


def client(seed: int, period_s: float, timer_s: float, peers: list[str], external: list[str], resolver: str = "",
           key: str = "") -> None:  # fmt: skip
    rng = random.Random(seed)
    if external and timer_s > 0:
        threading.Thread(target=timer, args=(external[0], timer_s, resolver), daemon=True).start()
    while True:
        time.sleep(rng.expovariate(1.0 / period_s))
        u = rng.random()
        name = rng.choice(peers) if peers and (u < 0.55 or 0.8 <= u < 0.92) else rng.choice(external or peers)
        address = resolve(name, resolver)
        if not address:
            continue
        if u < 0.8:
            fetch(f"http://{address}/{rng.choice(PAGES)}")
        elif u < 0.9:
            fetch(f"http://{address}/{BULK}", timeout=10.0)
        elif u < 0.92 and key:
            ssh_login(address, key)
        else:
            refused(address)


def checker(period_s: float, addresses: list[str]) -> None:
    step = period_s / max(len(addresses), 1)
    while True:
        for address in addresses:
            with contextlib.suppress(OSError), socket.create_connection((address, 80), timeout=2.0) as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # closed with a RST
            time.sleep(step)


def beacon(address: str, period_s: float, jitter: float) -> None:
    while True:
        fetch(f"http://{address}/small.bin")
        time.sleep(period_s * (1.0 + jitter * (2.0 * random.random() - 1.0)))


TUNNEL_INTERFACE = "dns0"
"""The interface iodine makes once its handshake is done."""


def tunnel(address: str, period_s: float) -> None:
    """Wait for the tunnel's interface, then move data both ways through it."""
    upload = os.urandom(UPLOAD_BYTES)
    up = False
    while True:
        try:
            socket.if_nametoindex(TUNNEL_INTERFACE)
            break
        except OSError:
            time.sleep(0.2)
    while True:
        if up:
            request = urllib.request.Request(f"http://{address}/upload", data=upload, method="POST")
            with contextlib.suppress(urllib.error.URLError, OSError, TimeoutError):
                urllib.request.urlopen(request, timeout=20.0).read()
        else:
            fetch(f"http://{address}/page.bin", timeout=20.0)
        up = not up
        time.sleep(period_s)


def main(argv: list[str]) -> None:
    role, args = argv[0], argv[1:]
    if role == "client":
        split = [a.split(",") if a else [] for a in args[3:5]]
        client(int(args[0]), float(args[1]), float(args[2]), split[0], split[1], *args[5:7])
    elif role == "checker":
        checker(float(args[0]), args[1].split(","))
    elif role == "beacon":
        beacon(args[0], float(args[1]), float(args[2]))
    elif role == "web":
        web(args[0])
    elif role == "tunnel":
        tunnel(args[0], float(args[1]))
    else:
        raise SystemExit(f"unknown agent role {role!r}: web, client, checker, beacon or tunnel")


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):  # the lab stops its agents with SIGINT
        main(sys.argv[1:])
