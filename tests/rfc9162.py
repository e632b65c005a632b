"""An independent verifier of the transparency log, written from RFC 9162 §2.1 and
docs/verification.md only: it imports nothing of ``voting_service``. The tests check the
service's heads and proofs with it, so a mistake shared by the service's tree and its own
verifier (``voting_service.ledger.merkle``) would still show.

Its algorithms differ from the service's on purpose: roots by the recursive definition,
inclusion and consistency proofs checked by rebuilding the trees they describe.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def largest_power_below(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(leaves: Sequence[bytes]) -> bytes:
    """MTH(D[n]) over leaf *data* (not hashes), as RFC 9162 §2.1.1 defines it."""
    if not leaves:
        return sha(b"")
    if len(leaves) == 1:
        return sha(b"\x00" + leaves[0])
    k = largest_power_below(len(leaves))
    return sha(b"\x01" + mth(leaves[:k]) + mth(leaves[k:]))


def root_from_path(leaf: bytes, index: int, size: int, path: Sequence[bytes]) -> bytes:
    """The root an inclusion path (leaf upward) leads to, rebuilt top-down."""
    if size == 1:
        assert not path, "path too long"
        return sha(b"\x00" + leaf)
    assert path, "path too short"
    k = largest_power_below(size)
    top, rest = path[-1], path[:-1]
    if index < k:
        return sha(b"\x01" + root_from_path(leaf, index, k, rest) + top)
    return sha(b"\x01" + top + root_from_path(leaf, index - k, size - k, rest))


def roots_from_consistency(first: int, second: int, first_root: bytes,
                           proof: Sequence[bytes], whole: bool = True) -> tuple[bytes, bytes]:
    """The (old, new) roots a consistency proof describes, mirroring SUBPROOF."""
    if first == second:
        if whole:
            assert not proof, "proof too long"
            return first_root, first_root
        assert len(proof) == 1, "proof length"
        return proof[0], proof[0]
    assert proof, "proof too short"
    k = largest_power_below(second)
    top, rest = proof[-1], proof[:-1]
    if first <= k:
        old, new = roots_from_consistency(first, k, first_root, rest, whole)
        return old, sha(b"\x01" + new + top)
    old, new = roots_from_consistency(first - k, second - k, first_root, rest, False)
    return sha(b"\x01" + top + old), sha(b"\x01" + top + new)


def consistent(first: int, second: int, first_root: bytes, second_root: bytes,
               proof: Sequence[bytes]) -> bool:
    try:
        old, new = roots_from_consistency(first, second, first_root, proof)
    except AssertionError:
        return False
    return old == first_root and new == second_root


def head_signed(head: dict[str, Any], public_key: bytes) -> bool:
    message = "\n".join(["voting-service-tree-head/1", head["campaign_id"],
                         str(head["tree_size"]), head["root_hash"], str(head["timestamp"])])
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(
            base64.b64decode(head["signature"]), (message + "\n").encode())
    except Exception:
        return False
    return True


def canonical(obj: Any) -> str:
    """Canonical JSON as docs/verification.md defines it (written out, not json.dumps with
    sort_keys, to follow the text)."""
    if obj is None:
        return "null"
    if obj is True:
        return "true"
    if obj is False:
        return "false"
    if isinstance(obj, int):
        return str(obj)
    if isinstance(obj, str):
        out = ['"']
        for ch in obj:
            if ch == '"':
                out.append('\\"')
            elif ch == "\\":
                out.append("\\\\")
            elif ch in "\b\f\n\r\t":
                out.append({"\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}[ch])
            elif ord(ch) < 0x20:
                out.append(f"\\u{ord(ch):04x}")
            else:
                out.append(ch)
        return "".join(out) + '"'
    if isinstance(obj, list):
        return "[" + ",".join(canonical(x) for x in obj) + "]"
    assert isinstance(obj, dict)
    return "{" + ",".join(f"{canonical(k)}:{canonical(obj[k])}" for k in sorted(obj)) + "}"


def leaves_of(ledger: bytes, results: dict[str, Any] | None) -> list[bytes]:
    """The log's leaf data from a downloaded ledger (and the results, its last leaf)."""
    by_position: dict[int, bytes] = {}
    size = None
    for line in ledger.splitlines():
        obj = json.loads(line)
        if "vote_id" in obj:
            fields = [obj[k] for k in ("day", "vote_id", "voter", "candidate", "channel")]
            by_position[obj["log"]] = ("\t".join([*fields, "valid"]) + "\n").encode()
        elif "invalidation" in obj:
            text = f"invalidation\t{obj['invalidation']}\t{canonical(obj['reason'])}\n"
            text += "".join(f"{i}\n" for i in obj["strikes"])
            by_position[obj["log"]] = text.encode()
        elif obj.get("end") is True:
            size = obj["log_size"]
    assert size is not None and sorted(by_position) == list(range(size))
    leaves = [by_position[i] for i in range(size)]
    if results is not None:
        leaves.append(f"results\n{canonical(results)}\n".encode())
    return leaves
