"""The Merkle tree hash of RFC 9162 §2.1 (Certificate Transparency's), over a range oracle.

``leaf = SHA-256(0x00 || leaf bytes)``, ``node = SHA-256(0x01 || left || right)``; the tree
of ``n`` leaves splits at ``k``, the largest power of two smaller than ``n``. Proofs are the
RFC's inclusion path (§2.1.3.1) and consistency proof (§2.1.4.1). The hash of a range of
leaves comes from a ``Ranges`` oracle, so the stored tree (``transparency``) answers from its
complete subtrees and reads leaves only at the ragged right edge; ``MemoryRanges`` is the
in-memory one ``verify`` builds from a downloaded ledger.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Protocol

EMPTY = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def split(n: int) -> int:
    """The largest power of two smaller than ``n`` (``n`` ≥ 2)."""
    return 1 << ((n - 1).bit_length() - 1)


class Ranges(Protocol):
    def __call__(self, start: int, end: int) -> bytes:
        """MTH of leaves ``[start, end)`` (``end > start``)."""


def root(hash_of: Ranges, size: int) -> bytes:
    return EMPTY if size == 0 else hash_of(0, size)


def inclusion(hash_of: Ranges, index: int, size: int) -> list[bytes]:
    """RFC 9162 §2.1.3.1 PATH(m, D[n]): siblings from the leaf up."""
    if not 0 <= index < size:
        raise ValueError(f"leaf {index} is not in a tree of {size}")
    path: list[bytes] = []
    start, end = 0, size
    while end - start > 1:  # walk down, collecting the other half at each split
        k = split(end - start)
        if index < start + k:
            path.append(hash_of(start + k, end))
            end = start + k
        else:
            path.append(hash_of(start, start + k))
            start += k
    path.reverse()
    return path


def consistency(hash_of: Ranges, first: int, second: int) -> list[bytes]:
    """RFC 9162 §2.1.4.1 PROOF(m, D[n]) = SUBPROOF(m, D[n], true)."""
    if not 0 < first <= second:
        raise ValueError(f"no consistency proof from {first} to {second}")
    proof: list[bytes] = []

    def sub(m: int, start: int, end: int, whole: bool) -> None:
        n = end - start
        if m == n:
            if not whole:
                proof.append(hash_of(start, end))
            return
        k = split(n)
        if m <= k:
            sub(m, start, start + k, whole)
            proof.append(hash_of(start + k, end))
        else:
            sub(m - k, start + k, end, False)
            proof.append(hash_of(start, start + k))

    if first < second:
        sub(first, 0, second, True)
    return proof


def root_from_inclusion(leaf: bytes, index: int, size: int, path: Sequence[bytes]) -> bytes:
    """RFC 9162 §2.1.3.2: the root the path leads to (raises ``ValueError`` on a bad path)."""
    if not 0 <= index < size:
        raise ValueError("index out of range")
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            raise ValueError("path too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ValueError("path too short")
    return r


def check_consistency(first: int, second: int, first_root: bytes, second_root: bytes,
                      proof: Sequence[bytes]) -> bool:
    """RFC 9162 §2.1.4.2."""
    if first == second:
        return not proof and first_root == second_root
    if not 0 < first < second or not proof:
        return False
    path = list(proof)
    if first & (first - 1) == 0:  # a power of two: the first tree is a subtree
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while not fn & 1 and fn:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and fr == first_root and sr == second_root


class MemoryRanges:
    """Every complete, aligned subtree of a leaf list, level by level (32 bytes each in one
    ``bytearray`` a level: 64 bytes a leaf in all): any range's hash in O(log n), what
    ``verify`` needs for many heads over one downloaded ledger."""

    def __init__(self, leaves: bytes | bytearray) -> None:
        if len(leaves) % 32:
            raise ValueError("leaf hashes are 32 bytes each")
        self.levels: list[bytes | bytearray] = [leaves]
        while len(self.levels[-1]) > 32:
            below = self.levels[-1]
            up = bytearray()
            for i in range(0, len(below) - 32, 64):
                up += hashlib.sha256(b"\x01" + below[i:i + 64]).digest()
            self.levels.append(up)

    @property
    def size(self) -> int:
        return len(self.levels[0]) // 32

    def __call__(self, start: int, end: int) -> bytes:
        n = end - start
        if n <= 0 or end > self.size:
            raise ValueError(f"no range [{start}, {end}) in {self.size} leaves")
        if n & (n - 1) == 0 and start % n == 0:
            at = (start // n) * 32
            return bytes(self.levels[n.bit_length() - 1][at:at + 32])
        k = split(n)
        return node_hash(self(start, start + k), self(start + k, end))


def cached(hash_of: Callable[[int, int], bytes]) -> Callable[[int, int], bytes]:
    """One proof asks some ranges twice (root and path share them): ask the oracle once."""
    seen: dict[tuple[int, int], bytes] = {}

    def get(start: int, end: int) -> bytes:
        key = (start, end)
        if key not in seen:
            seen[key] = hash_of(start, end)
        return seen[key]

    return get
