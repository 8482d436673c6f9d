"""The 64-bit hash finaliser (xor-shift-multiply avalanche) the packet hash and the flow id share, and FNV-1a.

Compiled with numba; works on one ``np.uint64`` inside a kernel and on a ``uint64`` array from Python.
The two constant sets are the published ones; each keeps the values its column has always had.
"""

from __future__ import annotations

import numba as nb
import numpy as np

MURMUR3_FMIX64 = tuple(np.uint64(c) for c in (33, 0xFF51AFD7ED558CCD, 33, 0xC4CEB9FE1A85EC53, 33))
"""MurmurHash3's fmix64: the ``pkt_hash`` column (packets)."""

SPLITMIX64 = tuple(np.uint64(c) for c in (30, 0xBF58476D1CE4E5B9, 27, 0x94D049BB133111EB, 31))
"""SplitMix64's finaliser: the ``flow_id`` column (flows)."""

FNV1A64_OFFSET = np.uint64(0xCBF29CE484222325)
FNV1A64_PRIME = np.uint64(0x100000001B3)
"""FNV-1a (64-bit) basis and prime: the packet hash's input mixing and the DNS domain/name hashes."""


@nb.njit(inline="always", cache=True)
def finalize64(h, constants):
    """Avalanche ``h`` (uint64 scalar or array): ``h ^= h >> s1; h *= m1; h ^= h >> s2; h *= m2; h ^= h >> s3``."""
    s1, m1, s2, m2, s3 = constants
    h = h ^ (h >> s1)
    h = h * m1
    h = h ^ (h >> s2)
    h = h * m2
    return h ^ (h >> s3)
