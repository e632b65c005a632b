"""The transparency log (issue #26) on real servers: heads signed during the vote, inclusion
and consistency proofs checked by an independent verifier (``tests/rfc9162``), the
published ledger checked against heads gathered earlier, and ``verify`` refusing every
tampered results or ledger file."""

from __future__ import annotations

import argparse
import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests import rfc9162
from tests.conftest import ADMIN, Backend, Harness, make_settings
from tests.integration.antifraud_support import NO_LIMITS, drain, issued, problem_code
from voting_service import cli
from voting_service.ledger import public_ledger, transparency
from voting_service.settings import Secret, Settings

CID = "t2026"
LOG = f"/api/v1/campaigns/{CID}/log"
ADMIN_API = f"/api/v1/admin/campaigns/{CID}"
SEED = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"  # RFC 8032 test 1
PUBLIC = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"


@pytest.fixture
def settings(backend: Backend, pg_url: str) -> Settings:
    return make_settings(backend, pg_url, log_signing_key=Secret(SEED))


@pytest.fixture
def h(harness: Harness) -> Harness:
    return harness


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks of 4 leaves: a few dozen votes make stored subtrees on several levels."""
    monkeypatch.setattr(transparency, "CHUNK_LEVEL", 2)
    monkeypatch.setattr(transparency, "CHUNK", 4)
    monkeypatch.setattr(transparency, "MAX_PROOF_LEAVES", 32)


async def cast(h: Harness, voters: int, candidates: list[str]) -> list[tuple[str, str]]:
    """Each voter votes for each candidate; returns (vote_id, candidate)."""
    out = []
    for _ in range(voters):
        token = issued(h)
        for cand in candidates:
            r = await h.client.post(f"/api/v1/campaigns/{CID}/votes",
                                    json={"candidate_id": cand},
                                    headers={"X-Voter-Token": token})
            assert r.status_code == 200, r.text
            out.append((r.json()["vote_id"], cand))
    return out


def config(h: Harness) -> transparency.LogConfig:
    return transparency.config(h.settings)


async def signed_head(h: Harness) -> dict[str, Any]:
    await drain(h)
    head = await transparency.sign_head(h.pg, CID, config(h), force=True)
    assert head is not None
    r = await h.client.get(f"{LOG}/head")
    assert r.status_code == 200 and r.json() == head, r.text
    return head


def run_verify(ledger: Path, results: Path | None, heads: Path | None,
               key: str | None = PUBLIC) -> int:
    return cli.cmd_verify(argparse.Namespace(
        ledger=str(ledger), results=str(results) if results else None,
        heads=str(heads) if heads else None, key=key if heads else None))


async def test_heads_proofs_and_the_published_ledger_against_earlier_heads(
    h: Harness, small_chunks: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await h.create_campaign(candidates=4, rules=NO_LIMITS)
    r = await h.client.get(f"{LOG}/head")
    assert r.status_code == 404 and problem_code(r) == "no_tree_head"
    key = (await h.client.get("/api/v1/log/key")).json()
    assert key["public_key"] == PUBLIC and key["algorithm"] == "Ed25519"
    public = bytes.fromhex(PUBLIC)

    votes = await cast(h, 5, ["c001", "c002", "c003"])
    first = await signed_head(h)
    assert first["tree_size"] == 15
    # nothing new: no second head of the same size
    assert await transparency.sign_head(h.pg, CID, config(h), force=True) is None
    votes += await cast(h, 4, ["c001", "c004"]) + await cast(h, 3, ["c002"])
    second = await signed_head(h)
    assert second["tree_size"] == 26
    # a strike-out is a leaf of its own, naming the votes it strikes
    struck_voter = (await h.pg.fetchval(
        "SELECT voter_id FROM votes WHERE candidate_id = 'c004' LIMIT 1"))
    r = await h.client.post(f"{ADMIN_API}/invalidations", headers=ADMIN,
                            json={"reason": "刷票\t测试", "voter_ids": [struck_voter]})
    assert r.status_code == 201 and r.json()["votes_invalidated"] == 2, r.text
    inv_id = r.json()["id"]
    votes += await cast(h, 2, ["c003"])
    third = await signed_head(h)
    assert third["tree_size"] == 26 + 1 + 2
    heads = [first, second, third]
    for head in heads:
        assert rfc9162.head_signed(head, public), head
        r = await h.client.get(f"{LOG}/heads/{head['tree_size']}")
        assert r.json() == head
    feed = (await h.client.get(f"{LOG}/heads", params={"after": 15})).json()
    assert [x["tree_size"] for x in feed["heads"]] == [26, 29]

    # consistency between every pair, checked by the independent verifier
    for a in heads:
        for b in heads:
            if a["tree_size"] > b["tree_size"]:
                continue
            r = await h.client.get(f"{LOG}/consistency", params={
                "first": a["tree_size"], "second": b["tree_size"]})
            assert r.status_code == 200, r.text
            proof = [bytes.fromhex(x) for x in r.json()["proof"]]
            assert rfc9162.consistent(a["tree_size"], b["tree_size"],
                                      bytes.fromhex(a["root_hash"]),
                                      bytes.fromhex(b["root_hash"]), proof)
            if a["tree_size"] < b["tree_size"]:  # and a wrong root is refused
                assert not rfc9162.consistent(a["tree_size"], b["tree_size"],
                                              bytes(32), bytes.fromhex(b["root_hash"]), proof)
    r = await h.client.get(f"{LOG}/consistency", params={"first": 3, "second": 30})
    assert r.status_code == 400 and problem_code(r) == "invalid_request"
    r = await h.client.get(f"{LOG}/consistency", params={"first": "x", "second": 3})
    assert r.status_code == 400 and problem_code(r) == "invalid_request"

    # every vote's inclusion in the latest head, and in the head after the receipt's
    latest = bytes.fromhex(third["root_hash"])
    for vote_id, cand in votes:
        r = await h.client.get(f"{LOG}/inclusion", params={"vote_id": vote_id})
        assert r.status_code == 200, r.text
        (proof,) = r.json()["proofs"]
        leaf = proof["leaf"].encode()
        assert leaf.split(b"\t")[1] == vote_id.encode() and leaf.split(b"\t")[3] == cand.encode()
        path = [bytes.fromhex(x) for x in proof["path"]]
        assert rfc9162.root_from_path(leaf, proof["log_index"], 29, path) == latest
    early = votes[0][0]
    r = await h.client.get(f"{LOG}/inclusion", params={"vote_id": early, "size": 15})
    (proof,) = r.json()["proofs"]
    assert rfc9162.root_from_path(proof["leaf"].encode(), proof["log_index"], 15,
                                  [bytes.fromhex(x) for x in proof["path"]]) \
        == bytes.fromhex(first["root_hash"])
    late = votes[-1][0]
    r = await h.client.get(f"{LOG}/inclusion", params={"vote_id": late, "size": 15})
    assert r.status_code == 404 and problem_code(r) == "not_in_log"
    r = await h.client.get(f"{LOG}/inclusion", params={"vote_id": "x"})
    assert r.status_code == 400 and problem_code(r) == "invalid_request"

    # publication: the results are the last leaf, under a head signed at once
    r = await h.client.patch(ADMIN_API, json={"status": "closed"}, headers=ADMIN)
    assert r.status_code == 200
    r = await h.client.patch(f"{ADMIN_API}/candidates/c003", headers=ADMIN,
                             json={"status": "withdrawn", "reason": "本人申请"})
    r = await h.client.post(f"{ADMIN_API}/publication", headers=ADMIN, json={"note": "公示"})
    assert r.status_code == 201, r.text
    results = (await h.client.get(f"/api/v1/campaigns/{CID}/results")).json()
    final = (await h.client.get(f"{LOG}/head")).json()
    assert final["tree_size"] == 30
    ledger = (await h.client.get(f"/api/v1/campaigns/{CID}/ledger")).content
    leaves = rfc9162.leaves_of(ledger, results)
    assert len(leaves) == 30
    for head in [*heads, final]:  # the independent recount of every root
        assert rfc9162.mth(leaves[:head["tree_size"]]).hex() == head["root_hash"]
    assert leaves[26].startswith(f"invalidation\t{inv_id}\t\"刷票\\t测试\"\n".encode())
    ranks = {c["candidate_id"]: (c["rank"], c["status"]) for c in results["candidates"]}
    assert ranks["c003"] == (None, "withdrawn"), ranks  # keeps votes, takes no rank

    # verify with the heads: everything is checked, nothing is left unsaid
    files = write(tmp_path, ledger, results, [*heads, final])
    capsys.readouterr()
    assert run_verify(*files) == 0
    out = capsys.readouterr().out
    assert "4 signed head(s)" in out and "NOT CHECKED" not in out, out
    # without them, verify says what it did not check
    assert run_verify(files[0], files[1], None) == 0
    out = capsys.readouterr().out
    assert "NOT CHECKED (no signed head covers the results): title, note" in out, out

    # a day rewritten after the first heads, digests and totals made to match again
    forged = rewrite_first_day(ledger, results)
    ffiles = write(tmp_path / "forged", forged[0], forged[1], heads)
    assert run_verify(ffiles[0], ffiles[1], None) == 0, "self-consistent without the heads"
    capsys.readouterr()
    assert run_verify(*ffiles) == 1
    err = capsys.readouterr().err
    assert "MISMATCH head 1 (size 15" in err and "rewritten" in err, err

    # a fork: a second head of one size with another root is proof of misconduct
    forked = dict(second, root_hash=hashlib.sha256(b"other").hexdigest())
    forked["signature"] = resign(forked)
    assert run_verify(*write(tmp_path / "fork", ledger, results, [second, forked])) == 1
    assert "disagree" in capsys.readouterr().err


def write(folder: Path, ledger: bytes, results: dict[str, Any] | bytes,
          heads: list[dict[str, Any]]) -> tuple[Path, Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = folder / "ledger.ndjson", folder / "results.json", folder / "heads.ndjson"
    paths[0].write_bytes(ledger)
    paths[1].write_bytes(results if isinstance(results, bytes)
                         else json.dumps(results, ensure_ascii=False).encode())
    paths[2].write_text("".join(json.dumps(x) + "\n" for x in heads))
    return paths


def resign(head: dict[str, Any]) -> str:
    import base64

    key = transparency.signing_key(SEED)
    message = transparency.head_message(head["campaign_id"], head["tree_size"],
                                        bytes.fromhex(head["root_hash"]), head["timestamp"])
    return base64.b64encode(key.sign(message)).decode()


def rewrite_first_day(ledger: bytes, results: dict[str, Any]) -> tuple[bytes, dict[str, Any]]:
    """Move the first valid vote of c001 to c002, then recompute every digest and total so
    the files agree with each other: only heads signed before can tell."""
    objs = [json.loads(x) for x in ledger.splitlines()]
    moved = next(o for o in objs if o.get("candidate") == "c001" and o["status"] == "valid")
    moved["candidate"] = "c002"
    chain = public_ledger.Chain(objs[0]["campaign_id"])
    out = []
    for o in objs:
        if "vote_id" in o:
            chain.add(public_ledger.Record(o["day"], o["vote_id"], o["voter"], o["candidate"],
                                           o["channel"], o["status"], o["log"]))
        elif "day_end" in o:
            day = chain.end_day()
            assert day is not None
            o = {"day_end": day["day"], "votes": day["votes"], "digest": day["digest"]}
        elif o.get("end") is True:
            o = dict(o, digest=chain.digest)
        out.append(json.dumps(o, ensure_ascii=False, separators=(",", ":")).encode())
    forged = json.loads(json.dumps(results))
    forged["digest"], forged["days"] = chain.digest, chain.days
    for c in forged["candidates"]:
        c["votes"] += {"c001": -1, "c002": 1}.get(c["candidate_id"], 0)
    rows = forged["candidates"]
    rows.sort(key=public_ledger.rank_key)
    for row, rank in zip(rows, public_ledger.expected_ranks(rows), strict=True):
        row["rank"] = rank
    return b"\n".join(out) + b"\n", forged


# --- §1: every tampered file fails ------------------------------------------------------


def _swap(rows: list[dict[str, Any]], field: str) -> None:
    rows[0][field], rows[1][field] = rows[1][field], rows[0][field]


Edit = Callable[[dict[str, Any]], Any]
RESULT_EDITS: dict[str, Edit] = {
    "ranks swapped": lambda r: _swap(r["candidates"], "rank"),
    "names swapped between counts": lambda r: _swap(r["candidates"], "name"),
    "a candidate's status changed": lambda r: r["candidates"][1].update(status="withdrawn"),
    "a withdrawn candidate made active": lambda r: next(
        c for c in r["candidates"] if c["status"] == "withdrawn").update(status="active"),
    "a candidate's number changed": lambda r: r["candidates"][0].update(number=99),
    "a duplicate row with 999,999 votes first": lambda r: r["candidates"].insert(
        0, dict(r["candidates"][0], votes=999_999)),
    "a fake day added": lambda r: r["days"].append(
        {"day": "2099-01-01", "votes": 0, "digest": r["digest"]}),
    "the days list removed": lambda r: r.update(days=[]),
    "the days field dropped": lambda r: r.pop("days"),
    "an invalidation reason rewritten": lambda r: r["invalidated"]["by_reason"][0].update(
        reason="系统误判"),
    "an invalidation listed twice": lambda r: r["invalidated"]["by_reason"].append(
        dict(r["invalidated"]["by_reason"][0])),
    "published_at changed": lambda r: r.update(published_at="2026-01-01T00:00:00+00:00"),
    "the note changed": lambda r: r.update(note="公示期为1个工作日"),
    "the title changed": lambda r: r.update(title="别的评选"),
    "an extra field": lambda r: r.update(audited=True),
    "an extra candidate field": lambda r: r["candidates"][0].update(bonus=1),
    "a total changed": lambda r: r.update(total=r["total"] + 1),
}
RAW_RESULT_EDITS: dict[str, Callable[[bytes], bytes]] = {
    "a duplicate key": lambda b: b.replace(b'"note":', b'"note":"x","note":', 1),
    "a non-canonical number": lambda b: b.replace(b'"total":', b'"total":1.0,"x":', 1),
    "an exponent": lambda b: b.replace(b'"total":', b'"total":1e1,"x":', 1),
}


STRUCK = re.compile(rb'"status":\d+')


def _first_record(lines: list[bytes]) -> int:
    return next(i for i, x in enumerate(lines) if b'"vote_id"' in x)


def _edit_line(lines: list[bytes], at: int, fn: Callable[[bytes], bytes]) -> bytes:
    out = list(lines)
    out[at] = fn(out[at])
    return b"\n".join(out) + b"\n"


LEDGER_EDITS: dict[str, Callable[[list[bytes]], bytes]] = {
    "duplicate keys in a record": lambda ls: _edit_line(
        ls, _first_record(ls),
        lambda x: x.replace(b'"candidate":', b'"candidate":"c009","candidate":')),
    "an extra field in a record": lambda ls: _edit_line(
        ls, _first_record(ls), lambda x: x[:-1] + b',"weight":2}'),
    "an extra field in the header": lambda ls: _edit_line(ls, 0, lambda x: x[:-1] + b',"x":1}'),
    "a non-canonical log position": lambda ls: _edit_line(
        ls, _first_record(ls), lambda x: x.replace(b'"log":', b'"log":-0,"x":')),
    "a struck vote made valid": lambda ls: _edit_line(
        ls, next(i for i, x in enumerate(ls) if STRUCK.search(x)),
        lambda x: STRUCK.sub(b'"status":"valid"', x)),
    "a record dropped": lambda ls: b"\n".join(ls[:1] + ls[2:]) + b"\n",
}


async def test_every_tampered_file_fails(
    h: Harness, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await h.create_campaign(candidates=4, rules=NO_LIMITS)
    await cast(h, 3, ["c001", "c002"])
    await cast(h, 1, ["c001"])
    await cast(h, 2, ["c003"])
    await cast(h, 1, ["c004"])
    await drain(h)
    r = await h.client.post(f"{ADMIN_API}/invalidations", headers=ADMIN,
                            json={"reason": "刷票", "candidate_id": "c004"})
    assert r.status_code == 201, r.text
    r = await h.client.patch(ADMIN_API, json={"status": "closed"}, headers=ADMIN)
    r = await h.client.patch(f"{ADMIN_API}/candidates/c003", headers=ADMIN,
                             json={"status": "withdrawn", "reason": "本人申请"})
    await drain(h)
    r = await h.client.post(f"{ADMIN_API}/publication", headers=ADMIN, json={"note": "公示"})
    assert r.status_code == 201, r.text
    results = (await h.client.get(f"/api/v1/campaigns/{CID}/results")).json()
    ledger = (await h.client.get(f"/api/v1/campaigns/{CID}/ledger")).content
    heads = (await h.client.get(f"{LOG}/heads")).json()["heads"]
    assert heads and heads[-1]["tree_size"] == 10 + 1 + 1
    assert run_verify(*write(tmp_path / "good", ledger, results, heads)) == 0

    failures = []
    for name, edit in RESULT_EDITS.items():
        changed = json.loads(json.dumps(results))
        edit(changed)
        assert changed != results, name
        if run_verify(*write(tmp_path / "r", ledger, changed, heads)) != 1:
            failures.append(name)
    body = json.dumps(results, ensure_ascii=False, separators=(",", ":")).encode()
    for name, raw_edit in RAW_RESULT_EDITS.items():
        changed_raw = raw_edit(body)
        assert changed_raw != body, name
        if run_verify(*write(tmp_path / "b", ledger, changed_raw, heads)) != 1:
            failures.append(name)
    lines = ledger.splitlines()
    for name, ledger_edit in LEDGER_EDITS.items():
        changed_ledger = ledger_edit(lines)
        assert changed_ledger != ledger, name
        if run_verify(*write(tmp_path / "l", changed_ledger, results, heads)) != 1:
            failures.append(name)
    assert not failures, failures
    err = capsys.readouterr().err
    assert "duplicate key" in err and "non-canonical number" in err, err


# --- the observer's mirror ----------------------------------------------------------------


async def test_the_mirror_keeps_heads_and_catches_a_rewritten_log(
    h: Harness, small_chunks: None, tmp_path: Path
) -> None:
    import asyncio

    from voting_service import log_mirror

    loop = asyncio.get_running_loop()

    def fetch(path: str) -> Any:
        r = asyncio.run_coroutine_threadsafe(h.client.get(path), loop).result()
        assert r.status_code == 200, r.text
        return r.json()

    await h.create_campaign(candidates=3, rules=NO_LIMITS)
    await cast(h, 3, ["c001", "c002"])
    await signed_head(h)
    mirror = await asyncio.to_thread(log_mirror.Mirror, CID, tmp_path, fetch)
    assert (tmp_path / "key.txt").read_text().strip() == PUBLIC
    assert await asyncio.to_thread(mirror.step) == 1
    await cast(h, 2, ["c003"])
    await signed_head(h)
    await cast(h, 3, ["c001"])
    await signed_head(h)
    assert await asyncio.to_thread(mirror.step) == 2
    assert await asyncio.to_thread(mirror.step) == 0
    kept = [json.loads(x) for x in (tmp_path / "heads.ndjson").read_text().splitlines()]
    assert [x["tree_size"] for x in kept] == [6, 8, 11]

    # the operator rewrites a vote of the first day and rebuilds the tree from scratch
    await h.pg.execute("UPDATE votes SET candidate_id = 'c003' WHERE log_index = 0")
    await h.pg.execute("DELETE FROM log_nodes; UPDATE log_trees SET built = 0")
    await cast(h, 1, ["c002"])
    await signed_head(h)
    with pytest.raises(log_mirror.MirrorError, match="does not extend"):
        await asyncio.to_thread(mirror.step)
    assert list(tmp_path.glob("evidence-12.json"))
    # a second mirror started with another key refuses the pinned one
    with pytest.raises(log_mirror.MirrorError, match="pinned"):
        log_mirror.Mirror(CID, tmp_path, fetch, key="00" * 32)


async def test_the_flusher_signs_heads_on_its_interval_and_at_local_midnight(h: Harness) -> None:
    import datetime as dt

    from voting_service.ledger.flusher import Flusher

    await h.create_campaign(candidates=2, rules=NO_LIMITS)
    await cast(h, 2, ["c001"])
    flusher = Flusher(h.redis, h.settings.database_url or "", h.settings.shards,
                      log=config(h))
    try:
        await flusher.drain()
        t0 = dt.datetime(2026, 7, 1, 15, 45, tzinfo=dt.UTC)  # 23:45 in Shanghai
        assert await flusher.log_tick(t0) == 1
        await cast(h, 1, ["c002"])
        await flusher.drain()
        assert await flusher.log_tick(t0 + dt.timedelta(minutes=5)) == 0  # not due yet
        assert await flusher.log_tick(t0 + dt.timedelta(minutes=10)) == 1  # the interval
        await cast(h, 1, ["c001"])
        await flusher.drain()
        # 23:59 local: 4 minutes after the last head, not due; 00:00:30: a local midnight
        assert await flusher.log_tick(t0 + dt.timedelta(minutes=14)) == 0
        assert await flusher.log_tick(t0 + dt.timedelta(minutes=15, seconds=30)) == 1
        # nothing new: no head, however long it has been
        assert await flusher.log_tick(t0 + dt.timedelta(days=1)) == 0
    finally:
        await flusher.close()
    sizes = [x["tree_size"] for x in (await h.client.get(f"{LOG}/heads")).json()["heads"]]
    assert sizes == [2, 3, 4]


async def test_proofs_still_verify_after_the_retention_purge(
    h: Harness, small_chunks: None
) -> None:
    """The purge replaces each voter id by ``p:`` + its ledger pseudonym: the leaves the log
    recomputes from those rows must be the leaves it signed, or every inclusion proof and
    every consistency proof of a purged campaign would fail (and a mirror cry rewrite)."""
    from voting_service.ledger import purge

    await h.create_campaign(candidates=3, rules=NO_LIMITS)
    votes = await cast(h, 5, ["c001", "c002", "c003"])
    early = await signed_head(h)
    r = await h.client.patch(ADMIN_API, json={"status": "closed"}, headers=ADMIN)
    assert r.status_code == 200
    r = await h.client.post(f"{ADMIN_API}/publication", headers=ADMIN, json={})
    assert r.status_code == 201, r.text
    final = (await h.client.get(f"{LOG}/head")).json()
    assert final["tree_size"] == 16  # 15 votes and the results

    async def proofs() -> list[tuple[str, Any]]:
        out = []
        for vote_id, _cand in votes:
            r = await h.client.get(f"{LOG}/inclusion", params={"vote_id": vote_id})
            assert r.status_code == 200, r.text
            out.append((vote_id, r.json()["proofs"]))
        r = await h.client.get(f"{LOG}/consistency", params={
            "first": early["tree_size"], "second": final["tree_size"]})
        assert r.status_code == 200, r.text
        out.append(("consistency", r.json()["proof"]))
        return out

    before = await proofs()
    [plan] = await purge.plans(h.pg, 0, CID)
    counts = await purge.purge(h.pg, h.redis, plan, str(h.settings.pepper),
                               h.settings.shards, "test")
    assert counts["votes"] == 15
    assert await h.pg.fetchval(
        "SELECT count(*) FROM votes WHERE campaign_id = $1 AND voter_id NOT LIKE 'p:%'",
        CID) == 0
    assert await proofs() == before
    root = bytes.fromhex(final["root_hash"])
    for (vote_id, found), (_, cand) in zip(before, votes, strict=False):
        (proof,) = found
        assert proof["leaf"].split("\t")[1] == vote_id and proof["leaf"].split("\t")[3] == cand
        assert rfc9162.root_from_path(proof["leaf"].encode(), proof["log_index"], 16,
                                      [bytes.fromhex(x) for x in proof["path"]]) == root
    assert rfc9162.consistent(early["tree_size"], final["tree_size"],
                              bytes.fromhex(early["root_hash"]), root,
                              [bytes.fromhex(x) for x in before[-1][1]])
    # a tree built again from the purged rows has the signed root
    await h.pg.execute("DELETE FROM log_nodes WHERE campaign_id = $1", CID)
    await h.pg.execute("UPDATE log_trees SET built = 0 WHERE campaign_id = $1", CID)
    await transparency.build(h.pg, CID, str(h.settings.pepper), 1 << 10)
    t = await transparency.tree(h.pg, CID, str(h.settings.pepper))
    assert await transparency.root_of(t, 16) == root
