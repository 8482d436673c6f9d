"""The programs the lab drives (iproute2, nftables, tcpdump, attack tools): checks, versions, and running them in a
network namespace with errors that name the command."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Sequence

from netsentry.pipeline.core.errors import LabError, ToolMissingError

TOOL_PACKAGES: dict[str, str] = {
    "ip": "iproute2",
    "tc": "iproute2",
    "bridge": "iproute2",
    "ethtool": "ethtool",
    "nft": "nftables",
    "tcpdump": "tcpdump",
    "nmap": "nmap",
    "hping3": "hping3",
    "curl": "curl",
    "hydra": "hydra",
    "sshd": "openssh-server",
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
    "dnsmasq": "dnsmasq-base",
    "iodine": "iodine",
    "iodined": "iodine",
    "ifconfig": "net-tools",
    "arpspoof": "dsniff",
    "vsftpd": "vsftpd",
}
"""Each program the lab may run and the Debian package that provides it (what `make lab-tools` installs)."""

BASE_TOOLS = ("ip", "tc", "nft", "ethtool", "tcpdump", "dnsmasq", "sshd", "ssh", "ssh-keygen")
"""Programs every lab run needs (the benign cloud's resolver and SSH); attack tools are checked per scenario."""

VERSION_ARGS: dict[str, tuple[str, ...]] = {
    "ip": ("-V",),
    "tc": ("-V",),
    "nft": ("--version",),
    "ethtool": ("--version",),
    "tcpdump": ("--version",),
    "nmap": ("--version",),
    "hping3": ("--version",),
    "curl": ("--version",),
    "hydra": (),
    "sshd": ("-V",),
    "ssh": ("-V",),
    "dnsmasq": ("--version",),
    "iodine": ("-v",),
    "vsftpd": ("-v",),
}


def require_root() -> None:
    """LabError unless this is Linux and we are root (namespaces, links and qdiscs need CAP_NET_ADMIN)."""
    if not sys.platform.startswith("linux"):
        raise LabError(f"netsentry lab needs Linux network namespaces; this is {sys.platform}")
    if os.geteuid() != 0:
        raise LabError("netsentry lab needs root (it creates network namespaces, links and qdiscs): run it with sudo")


def require_tools(tools: Sequence[str]) -> None:
    """ToolMissingError naming every missing program and the apt packages that provide them."""
    missing = sorted({t for t in tools if shutil.which(t) is None})
    if missing:
        packages = sorted({TOOL_PACKAGES.get(t, t) for t in missing})
        raise ToolMissingError(
            f"the lab needs {', '.join(missing)}: install with 'apt-get install {' '.join(packages)}' "
            "(or `make lab-tools` as root)"
        )


def tool_versions(tools: Sequence[str]) -> dict[str, str]:
    """First line of each tool's version output (for the manifest); tools without a version flag are left out."""
    out = {}
    for t in sorted(set(tools) & set(VERSION_ARGS)):
        try:
            res = subprocess.run([t, *VERSION_ARGS.get(t, ("--version",))], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            continue
        lines = [ln.strip() for ln in (res.stdout + res.stderr).splitlines() if ln.strip()]
        out[t] = lines[0] if lines else ""
    out["kernel"] = os.uname().release
    return out


def run(cmd: Sequence[str], netns: str | None = None, check: bool = True, timeout: float = 30.0) -> str:
    """Run ``cmd`` (in namespace ``netns`` when given) and return its stdout; LabError with the command and its
    stderr when it fails and ``check``."""
    full = ["ip", "netns", "exec", netns, *cmd] if netns else list(cmd)
    try:
        res = subprocess.run(full, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise LabError(f"command timed out after {timeout:g} s: {' '.join(full)}") from None
    if check and res.returncode != 0:
        why = (res.stderr or res.stdout).strip().splitlines()
        raise LabError(f"command failed ({res.returncode}): {' '.join(full)}: {why[-1] if why else 'no output'}")
    return res.stdout


def spawn(cmd: Sequence[str], netns: str, log: str | None = None, cwd: str | None = None) -> subprocess.Popen[bytes]:
    """Start ``cmd`` in namespace ``netns`` in its own process group (so a stop reaches its children), in directory
    ``cwd`` (tools such as hydra leave files in theirs); output to ``log`` or discarded."""
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - handed to the child
    try:
        return subprocess.Popen(
            ["ip", "netns", "exec", netns, *cmd], stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, cwd=cwd,
        )  # fmt: skip
    finally:
        if log:
            out.close()  # type: ignore[union-attr]


def stop_process(proc: subprocess.Popen[bytes], grace_s: float = 5.0) -> None:
    """SIGINT the process group (tcpdump flushes its file, tools print their summary), then SIGKILL after
    ``grace_s``."""
    for sig, wait in ((signal.SIGINT, grace_s), (signal.SIGKILL, grace_s)):
        if proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
