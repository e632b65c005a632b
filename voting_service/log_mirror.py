"""Mirror a campaign's transparency log: fetch each signed tree head, check its signature and
its consistency with the last head kept, keep them. Anyone can run it during the vote.

    python -m voting_service.log_mirror https://vote.example.cn 2026gj --dir mirror-2026gj

It depends on the Python standard library and ``cryptography`` only (no code of the
service), so an observer can copy this one file and run it. The kept heads,
``<dir>/heads.ndjson`` (one head a line, as served), are what ``voting-service verify
--heads`` takes after the vote. The key is pinned in ``<dir>/key.txt`` on the first run
(or given with ``--key``). A head that fails is written with its proof to
``<dir>/evidence-<size>.json`` and the mirror exits 1: a wrong signature, a head that is
not an extension of the last one (the log was rewritten or forked), a tree that shrank.
Exit 0 after ``--once``; otherwise it polls every ``--every`` seconds until stopped.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

Fetch = Callable[[str], Any]
"""Path and query → the parsed JSON answer (raises ``MirrorError`` on an HTTP error)."""


class MirrorError(Exception):
    """The log misbehaved (or the service did not answer): one line, exit 1."""


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def consistent(first: int, second: int, first_root: bytes, second_root: bytes,
               proof: list[bytes]) -> bool:
    """RFC 9162 §2.1.4.2: the tree of ``second`` leaves extends the tree of ``first``."""
    if first == second:
        return not proof and first_root == second_root
    if not 0 < first < second or not proof:
        return False
    path = ([first_root] if first & (first - 1) == 0 else []) + proof
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = _node(c, fr), _node(c, sr)
            while not fn & 1 and fn:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = _node(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and fr == first_root and sr == second_root


def signed(head: dict[str, Any], public: bytes) -> bool:
    message = (f"voting-service-tree-head/1\n{head['campaign_id']}\n{head['tree_size']}\n"
               f"{head['root_hash']}\n{head['timestamp']}\n").encode()
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(
            base64.b64decode(head["signature"], validate=True), message)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


class Mirror:
    def __init__(self, campaign_id: str, folder: Path, fetch: Fetch, key: str | None = None):
        self.campaign_id, self.folder, self.fetch = campaign_id, folder, fetch
        folder.mkdir(parents=True, exist_ok=True)
        self.heads_file = folder / "heads.ndjson"
        key_file = folder / "key.txt"
        pinned = key_file.read_text().strip() if key_file.exists() else None
        if key is None:
            key = pinned or str(fetch("/api/v1/log/key")["public_key"])
        if pinned is not None and pinned != key:
            raise MirrorError(f"the key {key} is not the one pinned in {key_file} ({pinned})")
        key_file.write_text(key + "\n")
        self.public = bytes.fromhex(key)
        self.kept: list[dict[str, Any]] = []
        if self.heads_file.exists():
            self.kept = [json.loads(x) for x in self.heads_file.read_text().splitlines() if x]

    def _evidence(self, head: dict[str, Any], why: str, proof: Any = None) -> MirrorError:
        path = self.folder / f"evidence-{head.get('tree_size')}.json"
        path.write_text(json.dumps({"why": why, "head": head, "last_kept": self.kept[-1:],
                                    "proof": proof}, indent=2))
        return MirrorError(f"{why} (evidence in {path})")

    def step(self) -> int:
        """Fetch the heads after the last kept one, check and keep them; returns how many."""
        base = f"/api/v1/campaigns/{urllib.parse.quote(self.campaign_id)}/log"
        added = 0
        while True:
            after = self.kept[-1]["tree_size"] if self.kept else 0
            page = self.fetch(f"{base}/heads?after={after}")
            for head in page["heads"]:
                self._check(base, head)
                with self.heads_file.open("a") as out:
                    out.write(json.dumps(head, sort_keys=True) + "\n")
                self.kept.append(head)
                added += 1
            if not page.get("more"):
                return added

    def _check(self, base: str, head: dict[str, Any]) -> None:
        if head.get("campaign_id") != self.campaign_id or not signed(head, self.public):
            raise self._evidence(head, f"the head of size {head.get('tree_size')} is not"
                                 " signed by the pinned key")
        if not self.kept:
            return
        last = self.kept[-1]
        if head["tree_size"] <= last["tree_size"]:
            raise self._evidence(head, f"a head of size {head['tree_size']} after one of"
                                 f" {last['tree_size']}")
        if head["timestamp"] < last["timestamp"]:
            raise self._evidence(head, "a head signed before the last one kept")
        answer = self.fetch(f"{base}/consistency?first={last['tree_size']}"
                            f"&second={head['tree_size']}")
        proof = [bytes.fromhex(x) for x in answer["proof"]]
        if not consistent(last["tree_size"], head["tree_size"], bytes.fromhex(last["root_hash"]),
                          bytes.fromhex(head["root_hash"]), proof):
            raise self._evidence(head, f"the tree of {head['tree_size']} does not extend the"
                                 f" tree of {last['tree_size']} kept before: the log was"
                                 " rewritten", answer["proof"])


def http_fetch(base_url: str, timeout: float = 30) -> Fetch:
    def fetch(path: str) -> Any:
        try:
            with urllib.request.urlopen(base_url.rstrip("/") + path, timeout=timeout) as r:
                return json.loads(r.read())
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise MirrorError(f"{path}: {exc}") from exc
    return fetch


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="log_mirror", description=__doc__.split("\n\n")[0])
    p.add_argument("url", help="the service, e.g. https://vote.example.cn")
    p.add_argument("campaign")
    p.add_argument("--dir", default=None, help="where the heads are kept (default mirror-<c>)")
    p.add_argument("--key", help="the log's public key, 64 hex digits (else pinned on first use)")
    p.add_argument("--every", type=float, default=60.0, help="seconds between polls")
    p.add_argument("--once", action="store_true", help="one poll, then exit")
    args = p.parse_args(argv)
    folder = Path(args.dir or f"mirror-{args.campaign}")
    try:
        mirror = Mirror(args.campaign, folder, http_fetch(args.url), args.key)
        while True:
            n = mirror.step()
            last = mirror.kept[-1] if mirror.kept else None
            print(f"{n} new head(s); {len(mirror.kept)} kept"
                  + (f", size {last['tree_size']} root {last['root_hash']}" if last else ""),
                  flush=True)
            if args.once:
                return 0
            time.sleep(args.every)
    except MirrorError as exc:
        print(f"MISMATCH {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
