"""Retention: a configurable time after publication, what ties votes to people goes.

For each published campaign whose publication is ``VOTING_RETENTION_DAYS`` old:

- every ``votes.voter_id`` becomes ``p:`` + the voter's pseudonym in the published ledger
  (``public_ledger.Pseudonyms``): the votes of one voter still link, as they do in the
  public file, but the keyed hash of the phone number / openid / account is gone, so knowing
  a number and the pepper no longer finds its votes;
- every ``votes.ip`` is cleared;
- the campaign's blocklist entries: voters pseudonymised the same way, addresses deleted
  (and the campaign's blocked-voter hashes in Redis dropped);
- invalidation criteria: voter ids pseudonymised, the address cleared (reasons, counts and
  the struck-out votes stay: the published results name them).

The published ledger file and the results are stored apart (``published_ledger``,
``publications``) and not touched, so ``voting-service verify`` passes as before; the vote
lookup on the results page keeps answering with the same pseudonym. A purge runs in one
transaction per campaign, is recorded in ``purges`` and written to the audit log.
SMS codes and meters live only in Redis and expire within days (``fraud/sms*.py``).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from ..redis import keys
from ..redis.store import AnyRedis
from . import db
from .public_ledger import PURGED, Pseudonyms

CHUNK = 5000

DUE = """
SELECT p.campaign_id, p.published_at, u.purged_at
FROM publications p LEFT JOIN purges u USING (campaign_id)
WHERE ($1::text IS NULL OR p.campaign_id = $1)
ORDER BY p.published_at, p.campaign_id
"""
VOTERS = """
SELECT DISTINCT voter_id FROM votes WHERE campaign_id = $1 AND voter_id NOT LIKE 'p:%'
"""
PSEUDONYMISE_VOTES = """
UPDATE votes v SET voter_id = m.pseudonym, ip = NULL
FROM unnest($2::text[], $3::text[]) AS m(voter_id, pseudonym)
WHERE v.campaign_id = $1 AND v.voter_id = m.voter_id
"""
CLEAR_IPS = "UPDATE votes SET ip = NULL WHERE campaign_id = $1 AND ip IS NOT NULL"
COUNT_IPS = "SELECT count(*) FROM votes WHERE campaign_id = $1 AND ip IS NOT NULL"
COUNT_VOTES = "SELECT count(*) FROM votes WHERE campaign_id = $1 AND voter_id NOT LIKE 'p:%'"
BLOCKED = """
SELECT id, kind, value FROM blocklist
WHERE campaign_id = $1 AND (kind = 'ip' OR value NOT LIKE 'p:%')
"""
INVALIDATIONS = """
SELECT id, criteria FROM invalidations
WHERE campaign_id = $1 AND (criteria->'voter_ids' <> 'null'::jsonb
                            OR criteria->'ip' <> 'null'::jsonb)
"""


@dataclass
class Plan:
    """What a purge of one campaign does (or, when not due, would do when it is)."""

    campaign_id: str
    published_at: dt.datetime
    due_at: dt.datetime
    purged_at: dt.datetime | None
    counts: dict[str, int] = field(default_factory=dict)

    def due(self, now: dt.datetime) -> bool:
        return self.purged_at is None and self.due_at <= now

    def line(self, now: dt.datetime) -> str:
        what = ", ".join(f"{k} {v}" for k, v in self.counts.items())
        if self.purged_at is not None:
            return f"{self.campaign_id}: purged at {self.purged_at.isoformat()} ({what})"
        when = "due" if self.due(now) else f"not due until {self.due_at.isoformat()}"
        return f"{self.campaign_id}: {when}; would change {what}"


async def plans(conn: asyncpg.Connection, retention_days: int,
                campaign_id: str | None = None) -> list[Plan]:
    """Every published campaign (or one) with what its purge changes, nothing changed."""
    found = []
    for row in await conn.fetch(DUE, campaign_id):
        cid = row["campaign_id"]
        plan = Plan(cid, row["published_at"],
                    row["published_at"] + dt.timedelta(days=retention_days), row["purged_at"])
        if plan.purged_at is not None:
            plan.counts = dict(json.loads(await conn.fetchval(
                "SELECT counts FROM purges WHERE campaign_id = $1", cid)))
        else:
            blocked = await conn.fetch(BLOCKED, cid)
            plan.counts = {
                "voters": int(await conn.fetchval(
                    f"SELECT count(*) FROM ({VOTERS}) AS v", cid)),
                "votes": int(await conn.fetchval(COUNT_VOTES, cid)),
                "addresses": int(await conn.fetchval(COUNT_IPS, cid)),
                "blocklist": len(blocked),
                "invalidations": len(await conn.fetch(INVALIDATIONS, cid)),
            }
        found.append(plan)
    return found


def _pseudonymised(pseudonym: Pseudonyms, voter_id: str) -> str:
    return voter_id if voter_id.startswith(PURGED) else PURGED + pseudonym(voter_id)


async def purge(conn: asyncpg.Connection, redis: AnyRedis | None, plan: Plan, pepper: str,
                shards: int, actor: str) -> dict[str, int]:
    """Purge one campaign now (the caller checked it is due); returns the rows changed."""
    cid = plan.campaign_id
    pseudonym = Pseudonyms(pepper, cid)
    counts = {"voters": 0, "votes": 0, "addresses": 0, "blocklist": 0, "invalidations": 0}
    async with conn.transaction():
        addresses = int(await conn.fetchval(COUNT_IPS, cid))
        voters = [r["voter_id"] for r in await conn.fetch(VOTERS, cid)]
        for start in range(0, len(voters), CHUNK):
            chunk = voters[start:start + CHUNK]
            status = await conn.execute(PSEUDONYMISE_VOTES, cid, chunk,
                                        [_pseudonymised(pseudonym, v) for v in chunk])
            counts["votes"] += int(status.split()[-1])
        counts["voters"] = len(voters)
        await conn.execute(CLEAR_IPS, cid)
        counts["addresses"] = addresses
        for row in await conn.fetch(BLOCKED, cid):
            if row["kind"] == "ip":
                await conn.execute("DELETE FROM blocklist WHERE id = $1", row["id"])
            else:
                await conn.execute("UPDATE blocklist SET value = $2 WHERE id = $1", row["id"],
                                   _pseudonymised(pseudonym, row["value"]))
            counts["blocklist"] += 1
        for row in await conn.fetch(INVALIDATIONS, cid):
            criteria: dict[str, Any] = json.loads(row["criteria"])
            if criteria.get("voter_ids") is not None:
                criteria["voter_ids"] = sorted(_pseudonymised(pseudonym, v)
                                               for v in criteria["voter_ids"])
            if criteria.get("ip") is not None:
                criteria["ip"] = None
                criteria["ip_purged"] = True
            await conn.execute("UPDATE invalidations SET criteria = $2::jsonb WHERE id = $1",
                               row["id"], json.dumps(criteria))
            counts["invalidations"] += 1
        await conn.execute(
            "INSERT INTO purges (campaign_id, actor, counts) VALUES ($1, $2, $3::jsonb)",
            cid, actor, json.dumps(counts))
        await db.audit(conn, actor, "campaign.purge", cid,
                       {"published_at": plan.published_at.isoformat(), **counts})
    if redis is not None:  # the closed campaign's blocked voters: voter ids, no longer needed
        for shard in range(shards):
            await redis.delete(keys.blocked_voters(cid, shard))
    return counts
