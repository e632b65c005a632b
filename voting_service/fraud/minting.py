"""Anonymous voter tokens cost what votes cost (``POST /campaigns/{cid}/voter``).

A fresh token is a fresh daily quota: were tokens free, the address cap would be the only
brake on anonymous voting. So minting counts against limits of the same shape as votes — the
campaign's ``ip_per_minute``/``ip_per_day`` per address, ``net_per_minute``/``net_per_day``
per network — on keys of its own (``keys.mint_*``, through the same ``ip_limit.lua``), needs a
proof of work when the campaign's ``challenge`` is not ``off``, and is refused while the
address is blocked (the caller checks ``ip_blocks``, as for votes).

There is no voter yet to bind that proof to, so its challenge is issued to the *address*
(``subject``: the client's /32 or /64, what the address limit counts) and is spent once, by a
marker in the slot of the address's network.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import ChallengeFailed, RateLimited, TooManyVoters
from ..models import level_for
from ..redis import keys, scripts
from ..redis.pipeline import Pipeline
from ..vote import identity, voting
from ..vote.registry import LiveCampaign
from . import challenge


def subject(ip: str) -> str:
    """Whom a minting challenge is issued to: the address, as its limit counts it. Never a
    voter id (32 hex digits), so a proof for one is no proof for the other."""
    return "mint:" + identity.network_prefixes(ip)[0]


async def level(pipeline: Pipeline, campaign: LiveCampaign, ip: str, now: float) -> int:
    """The difficulty a minting challenge gets: ``adaptive`` rises with the address's and its
    network's minting pressure, as a vote's challenge does with their votes."""
    rules = campaign.c.rules
    if rules.challenge != "adaptive":
        return 0
    pressure = await voting.check_ip(pipeline, campaign, ip, now, peek=True, minting=True)
    return level_for(pressure, rules)


async def admit(
    pipeline: Pipeline, secret_keys: Sequence[str], campaign: LiveCampaign, ip: str,
    proof: str | None, now: float,
) -> None:
    """Let one more token be minted from ``ip``, or raise ``ChallengeFailed`` (no, a wrong or
    a used proof) or ``TooManyVoters`` (a cap of the address or its network)."""
    rules = campaign.c.rules
    checked = None
    if rules.challenge != "off":
        checked = challenge.signer(secret_keys).verify(proof, campaign.id, subject(ip), now)
        spent = keys.mint_spent(campaign.id, identity.network_prefixes(ip)[1], checked.id)
        if not int(await pipeline.call(scripts.load("spend_proof"), [spent],
                                      [checked.spent_until])):
            raise ChallengeFailed("this challenge was already used")
    try:
        pressure = await voting.check_ip(pipeline, campaign, ip, now, minting=True)
    except RateLimited as exc:
        raise TooManyVoters(headers=exc.headers) from None
    if checked is not None and rules.challenge == "adaptive" \
            and checked.level < level_for(pressure, rules) - 1:
        raise ChallengeFailed("this network is busy: fetch a new, harder challenge")
