"""Every Redis key name, built here and nowhere else (DESIGN §4).

Voter-scoped state, the tally shard and the ledger stream of one shard group share the hash
tag ``{c:<campaign>:g<NN>}`` so that ``cast_vote.lua`` touches a single Cluster slot. IP
limits are tagged by the network, ``{ip:<campaign>:<network>}``. Nothing is ever tagged by
candidate.

The keys a vote touches (issue 28 changed the limits' row and moved the idempotency records
into the quota hashes; the other names are as before, so a running deployment's quotas,
tallies and ledger stay readable):

===========================================  ======  =========================================
key                                          type    holds
===========================================  ======  =========================================
``{c:<cid>:g<NN>}:q:<day>:<voter>``          hash    ``_n`` votes of the day, ``<candidate>``
                                                     votes for it, ``#<vote_id>`` the first
                                                     answer to that vote (its idempotency
                                                     record; expires a day after the day)
``{c:<cid>:g<NN>}:tally``                    hash    candidate → votes of the shard group
``{c:<cid>:g<NN>}:ledger``                   stream  one field ``e`` a vote (``entry.py``)
``{c:<cid>:g<NN>}:idem:<voter>:<vote_id>``   string  the first answer (3 days): the record
                                                     before issue 28, written only while
                                                     ``VOTING_LEGACY_RECORDS_UNTIL``
``{c:<cid>:g<NN>}:blocked``                  hash    voter → block end (0 = never)
``{ip:<cid>:<network>}:l`` (``limits``)      hash    every limit level of the network, one
                                                     field a level, ``level_field``: ``""``
                                                     the network, ``"7:"`` its address
                                                     ``…7/32``; value ``<day>|<count>|<GCRA
                                                     time, ms>`` (day = ``ip_limit.lua``'s
                                                     ARGV[1])
===========================================  ======  =========================================

Before issue 28 the limits were two strings a level, ``{ip:<cid>:<network>}:gcra[:<host>]``
(GCRA time, PX) and ``…:d:<day>[:<host>]`` (count, EXPIREAT); then three fields a level in
the same hash (``<f>t``, ``<f>n``, ``<f>d``). Neither is read any more (see ``limits``).
Minting (``:m``), SMS sends (``{smsip:<network>}:l``, ``{sms:<phone>}:l``) and SMS checks
(``{smsip:<network>}:c``) use hashes of the same shape.

A record of its own a vote was a key created, expired and propagated a vote (~7 % of its
Valkey instructions); in the quota hash it is a field of a key the vote writes anyway. A
record now lives the rest of its day and the next (a retry also looks in yesterday's hash),
where the key lived three days. An upgrade during a vote sets ``VOTING_LEGACY_RECORDS_UNTIL``
to three days after the roll-out: until then votes read and write the old keys as well
(``cast_vote.lua``'s KEYS[6]), for the records of votes the old release acknowledged and for
its workers still running.

The other keys keep their names on purpose: a deploy during a campaign day must find the
day's quotas, and shorter names would save a few bytes a vote against a day's quotas read
from 0 (votes cast twice) or a second lookup a vote until the old keys expire.
"""

from __future__ import annotations

import functools
import zlib

CONFIG_HASH = "cfg:campaigns"
"""Hash: campaign id → JSON snapshot (campaign, candidates, channels) read by every worker."""
CONFIG_VERSION = "cfg:version"
"""Counter bumped on every admin change; workers poll it to reload the snapshot."""
FLUSHER_HEARTBEAT = "flusher:heartbeat:"
FLUSHER_MEMBERS = "flusher:members"
DRIFT_REPAIRS = "drift:repairs"
"""Hash ``<campaign>:found`` / ``:tally`` / ``:votes`` → counts of the flushers' drift
repairs (``ledger.repair``), for ``/metrics`` and the console."""
"""Sorted set: live flushers by name, scored with the unix ms their membership lapses; each
takes about its share of the shard streams."""


def shard_of(voter_id: str, shards: int) -> int:
    return zlib.crc32(voter_id.encode()) % shards


@functools.lru_cache(maxsize=4096)
def group_tag(campaign_id: str, shard: int) -> str:
    """Cached: a vote builds five keys of its group, and the formatting was 1 % of its CPU."""
    return f"{{c:{campaign_id}:g{shard:02d}}}"


def tally(campaign_id: str, shard: int) -> str:
    return f"{group_tag(campaign_id, shard)}:tally"


def ledger(campaign_id: str, shard: int) -> str:
    return f"{group_tag(campaign_id, shard)}:ledger"


def flusher_lease(campaign_id: str, shard: int) -> str:
    """String: name of the flusher that owns this shard stream, expiring unless renewed."""
    return f"{group_tag(campaign_id, shard)}:flusher"


def quota(campaign_id: str, shard: int, day: str, voter_id: str) -> str:
    """Hash of one voter's day: ``_n`` = votes cast, ``<candidate>`` = votes for it,
    ``#<vote_id>`` = the first answer to that vote (``voting.record_field``)."""
    return f"{group_tag(campaign_id, shard)}:q:{day}:{voter_id}"


def idempotency(campaign_id: str, shard: int, voter_id: str, vote_id: str) -> str:
    """The record of a vote as releases before issue 28 kept it (see the table above)."""
    return f"{group_tag(campaign_id, shard)}:idem:{voter_id}:{vote_id}"


def blocked_voters(campaign_id: str, shard: int) -> str:
    """Hash voter id → unix expiry (0 = never) of blocked voters of this group."""
    return f"{group_tag(campaign_id, shard)}:blocked"


def ip_tag(campaign_id: str, prefix: str) -> str:
    return f"{{ip:{campaign_id}:{prefix}}}"


def level_field(prefix: str, network: str) -> str:
    """Field prefix of one limit level inside its network's hash (``limits`` and kin): ``""``
    for the network itself; for an address, its part inside the network (``"7:"`` for
    ``1.2.3.7/32`` in ``1.2.3.0/24``; an IPv6 /64, its whole prefix and ``:``), so the
    fields a vote names stay short (each byte is read, and written to the AOF)."""
    if prefix == network:
        return ""
    if prefix.endswith("/32"):
        return prefix[prefix.rfind(".") + 1:-3] + ":"
    return prefix + ":"


def limits(campaign_id: str, network: str) -> str:
    """Hash of a network's vote limits (``ip_limit.lua``): the network's own and each of its
    addresses', one field ``<level_field>`` a level, ``<day>|<count>|<GCRA time>``.

    Layout since issue 28; it replaced two strings per level (``:gcra[:<prefix>]`` and
    ``:d:<day>[:<prefix>]``, same tag), then three fields a level (``<f>t``, ``<f>n``,
    ``<f>d``, same hash). Those are not read: a deployment upgraded during a campaign day
    counts that day's address and network votes from 0 again (the caps apply in full from
    the upgrade on; while old and new workers both run, each counts on its own fields, so
    an address may get up to twice its cap for the minutes of the roll-out), and the old
    fields go with the hash at the day's end. The SMS and minting meters, on the same
    script, likewise (the SMS budget's own counters, ``sms_budget_*``, are not affected)."""
    return f"{ip_tag(campaign_id, network)}:l"


def mint_limits(campaign_id: str, network: str) -> str:
    """Anonymous voter tokens minted by one network and its addresses: a hash shaped like
    ``limits``, under the same tag, so one ``ip_limit.lua`` call checks both levels."""
    return f"{ip_tag(campaign_id, network)}:m"


def mint_spent(campaign_id: str, network: str, challenge_id: str) -> str:
    """String: this minting proof of work was used; in the slot of the address's network."""
    return f"{ip_tag(campaign_id, network)}:mint:pow:{challenge_id}"


def challenge_spent(campaign_id: str, shard: int, challenge_id: str) -> str:
    """String: this proof-of-work challenge was used; in the voter's slot, as cast_vote needs."""
    return f"{group_tag(campaign_id, shard)}:pow:{challenge_id}"


def invalidation_applied(campaign_id: str, shard: int, invalidation_id: int) -> str:
    """String: this invalidation was taken off this shard group's tally (once, on retry too)."""
    return f"{group_tag(campaign_id, shard)}:inv:{invalidation_id}"


def sms_ip_tag(network: str) -> str:
    """Tag of an address's and its network's SMS meters: no campaign in it, so that sends
    and code checks are counted across every campaign (one handset farm, one allowance)."""
    return f"{{smsip:{network}}}"


def sms_ip_limits(network: str) -> str:
    """SMS code sends from one network and its addresses: a hash shaped like ``limits``."""
    return f"{sms_ip_tag(network)}:l"


def sms_check_limits(network: str) -> str:
    """SMS code checks (``/auth/sms/verify``) from one network and its addresses."""
    return f"{sms_ip_tag(network)}:c"


def sms_tag(phone_id: str) -> str:
    """Tag of one phone's state; ``phone_id`` is the keyed HMAC, never the number."""
    return f"{{sms:{phone_id}}}"


def sms_code(phone_id: str) -> str:
    """String ``<code digest>|<wrong tries>``, expiring with the code."""
    return f"{sms_tag(phone_id)}:code"


def sms_limits(phone_id: str) -> str:
    """Codes sent to one phone: a hash shaped like ``limits`` with the one level ``""``."""
    return f"{sms_tag(phone_id)}:l"


BLOCKED_NETWORKS = "cfg:blocked-networks"
"""String: JSON list of the active IP/CIDR blocks, rewritten whole on every change."""
BLOCKED_NETWORKS_VERSION = "cfg:blocked-networks:version"
"""Counter bumped after each rewrite; workers poll it every second."""


def barrier(key: str) -> str:
    """String written just before a ``WAITAOF``/``WAIT`` on the node that holds ``key`` (same
    hash tag): it gives that connection a replication offset past the batch's writes."""
    start = key.find("{")
    end = key.find("}", start + 1)
    tag = key[start:end + 1] if start >= 0 and end > start + 1 else f"{{{key}}}"
    return f"{tag}:barrier"


def barrier_probe(n: int) -> str:
    """``n``-th candidate key of the replica probe; the probe picks one per primary."""
    return barrier(f"{{barrier:{n}}}")


def timeline_tag(campaign_id: str) -> str:
    """Tag of a campaign's ops timeline: per-second counts written once a second per worker
    (a few commands a second, so one slot per campaign is no hot spot)."""
    return f"{{tl:{campaign_id}}}"


def timeline_minute(campaign_id: str, minute: int) -> str:
    """Hash ``<second of the minute>|<kind>|<value>`` → count of one minute (unix minute
    number), kind ``o`` = outcome, ``c`` = channel and ``i`` = identity of accepted votes."""
    return f"{timeline_tag(campaign_id)}:m:{minute}"


def timeline_snapshot(campaign_id: str, minute: int) -> str:
    """String: JSON tallies at the start of that minute (votes per candidate in a window)."""
    return f"{timeline_tag(campaign_id)}:snap:{minute}"


def auth_address(kind: str, network: str, prefix: str) -> str:
    """Counter of credential attempts of one kind (``console``, ``bearer``) from one address
    (IPv4 /32, IPv6 /64), tagged by its network so address and network share one call."""
    return f"{{auth:{kind}:{network}}}:a:{prefix}"


def auth_network(kind: str, network: str) -> str:
    """Counter of credential attempts of one kind from one network (IPv4 /24, IPv6 /48)."""
    return f"{{auth:{kind}:{network}}}:n"


def auth_account(name: str) -> str:
    """Counter of sign-in attempts (passwords and second-factor codes) at one staff account:
    the lock-out, whichever addresses they come from."""
    return f"{{auth:account:{name}}}:n"


def ops_upload(token: str) -> str:
    """A spreadsheet the console checked (dry run), kept until the organiser confirms it."""
    return f"ops:upload:{token}"


def objection_rate(prefix: str, window: str) -> str:
    """Objections sent from one address or network in the current window."""
    return f"objection:{window}:{prefix}"
# --- issue 25: the SMS budget (one slot: the budget is one atomic check) -----------------
SMS_BUDGET_TAG = "{smsbudget}"


def sms_budget_day(day: str) -> str:
    """Counter: messages sent on one Asia/Shanghai day, by every sender and campaign."""
    return f"{SMS_BUDGET_TAG}:d:{day}"


def sms_budget_hour(day: str, hour: str) -> str:
    return f"{SMS_BUDGET_TAG}:h:{day}:{hour}"


def sms_budget_prefix(day: str, prefix: str) -> str:
    """Counter: messages to the numbers of one 7-digit prefix (10,000 numbers, no person)."""
    return f"{SMS_BUDGET_TAG}:p:{day}:{prefix}"


def sms_budget_outcomes(day: str) -> str:
    """Hash outcome → count of one day (sent, throttled, refused_day, …)."""
    return f"{SMS_BUDGET_TAG}:o:{day}"


def sms_budget_alarms(day: str) -> str:
    return f"{SMS_BUDGET_TAG}:a:{day}"
