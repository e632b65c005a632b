"""Every Redis key name, built here and nowhere else (DESIGN §4).

Voter-scoped state, the tally shard and the ledger stream of one shard group share the hash
tag ``{c:<campaign>:g<NN>}`` so that ``cast_vote.lua`` touches a single Cluster slot. IP
limits are tagged by the prefix, ``{ip:<prefix>}``. Nothing is ever tagged by candidate.
"""

from __future__ import annotations

import zlib

CONFIG_HASH = "cfg:campaigns"
"""Hash: campaign id → JSON snapshot (campaign, candidates, channels) read by every worker."""
CONFIG_VERSION = "cfg:version"
"""Counter bumped on every admin change; workers poll it to reload the snapshot."""
FLUSHER_GROUP = "flusher"
FLUSHER_HEARTBEAT = "flusher:heartbeat:"


def shard_of(voter_id: str, shards: int) -> int:
    return zlib.crc32(voter_id.encode()) % shards


def group_tag(campaign_id: str, shard: int) -> str:
    return f"{{c:{campaign_id}:g{shard:02d}}}"


def tally(campaign_id: str, shard: int) -> str:
    return f"{group_tag(campaign_id, shard)}:tally"


def ledger(campaign_id: str, shard: int) -> str:
    return f"{group_tag(campaign_id, shard)}:ledger"


def quota(campaign_id: str, shard: int, day: str, voter_id: str) -> str:
    """Hash of one voter's day: ``_n`` = votes cast, ``<candidate>`` = votes for it."""
    return f"{group_tag(campaign_id, shard)}:q:{day}:{voter_id}"


def idempotency(campaign_id: str, shard: int, voter_id: str, vote_id: str) -> str:
    return f"{group_tag(campaign_id, shard)}:idem:{voter_id}:{vote_id}"


def blocked_voters(campaign_id: str, shard: int) -> str:
    """Hash voter id → unix expiry (0 = never) of blocked voters of this group."""
    return f"{group_tag(campaign_id, shard)}:blocked"


def ip_tag(campaign_id: str, prefix: str) -> str:
    return f"{{ip:{campaign_id}:{prefix}}}"


def ip_rate(campaign_id: str, prefix: str) -> str:
    return f"{ip_tag(campaign_id, prefix)}:gcra"


def ip_day(campaign_id: str, prefix: str, day: str) -> str:
    return f"{ip_tag(campaign_id, prefix)}:d:{day}"
