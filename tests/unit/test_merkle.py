"""The service's RFC 9162 tree (``ledger.merkle``) against the independent verifier in
``tests/rfc9162``, over every tree size up to 40 and every leaf and prefix of them."""

from __future__ import annotations

import hashlib

from tests import rfc9162
from voting_service.ledger import merkle


def _leaves(n: int) -> list[bytes]:
    return [f"2026-07-01\tv{i:07d}\t{'a' * 32}\tc00{i % 3}\t\tvalid\n".encode() for i in range(n)]


def test_roots_and_proofs_agree_with_the_independent_verifier() -> None:
    for n in range(1, 41):
        data = _leaves(n)
        tree = merkle.MemoryRanges(b"".join(merkle.leaf_hash(x) for x in data))
        root = merkle.root(tree, n)
        assert root == rfc9162.mth(data), n
        for i in range(n):
            path = merkle.inclusion(tree, i, n)
            assert rfc9162.root_from_path(data[i], i, n, path) == root, (i, n)
            assert merkle.root_from_inclusion(merkle.leaf_hash(data[i]), i, n, path) == root
            assert len(path) <= (n - 1).bit_length()
        for m in range(1, n + 1):
            proof = merkle.consistency(tree, m, n)
            old = rfc9162.mth(data[:m])
            assert rfc9162.consistent(m, n, old, root, proof), (m, n)
            assert merkle.check_consistency(m, n, old, root, proof), (m, n)
            if m < n:
                assert not rfc9162.consistent(m, n, hashlib.sha256(b"x").digest(), root, proof)
                assert not merkle.check_consistency(m, n, old, root, proof[:-1])


def test_the_documented_hashes() -> None:
    """RFC 9162: the empty tree is SHA-256 of nothing, leaves and nodes are prefixed."""
    assert merkle.root(merkle.MemoryRanges(b""), 0).hex() == (
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    a, b = merkle.leaf_hash(b"a"), merkle.leaf_hash(b"b")
    assert a == hashlib.sha256(b"\x00a").digest()
    assert merkle.MemoryRanges(a + b)(0, 2) == hashlib.sha256(b"\x01" + a + b).digest()


def test_a_tampered_inclusion_path_is_refused() -> None:
    data = _leaves(11)
    tree = merkle.MemoryRanges(b"".join(merkle.leaf_hash(x) for x in data))
    path = merkle.inclusion(tree, 5, 11)
    root = merkle.root(tree, 11)
    assert rfc9162.root_from_path(data[5], 5, 11, path) == root
    assert rfc9162.root_from_path(data[4], 5, 11, path) != root
    bad = [path[0][::-1], *path[1:]]
    assert rfc9162.root_from_path(data[5], 5, 11, bad) != root
