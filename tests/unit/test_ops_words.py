"""Suspicious groups in the duty officer's words (no I/O)."""

from __future__ import annotations

from typing import Any

import msgspec

from tests.conftest import campaign_payload
from voting_service.models import Campaign
from voting_service.vote.registry import LiveCampaign
from voting_service.web.ops import words as ops_words


def live() -> LiveCampaign:
    payload = campaign_payload() | {"channels": []}
    return LiveCampaign(msgspec.convert(payload, Campaign))


def group(signal: str, criteria: dict[str, Any], **evidence: Any) -> dict[str, Any]:
    return {"signal": signal, "summary": "the English summary", "criteria": criteria,
            "evidence": {"votes": 120, "voters": 40, "span_seconds": 600.0,
                         "prefixes": {"203.0.113.0/24": 120}} | evidence}


def test_each_signal_reads_as_a_chinese_sentence_with_its_numbers() -> None:
    x = live()
    said = {
        "spike": ops_words.describe(group("candidate_spike", {"candidate_id": "c003"},
                                          candidate_id="c003", baseline_per_bucket=2.0,
                                          bucket_seconds=300.0), x, "zh"),
        "volume": ops_words.describe(group("prefix_volume", {"ip": "203.0.113.0/24"},
                                           median_votes_per_network=4), x, "zh"),
        "share": ops_words.describe(group("prefix_candidate", {"ip": "203.0.113.0/24"},
                                          candidate_id="c003", share=0.95), x, "zh"),
        "fresh": ops_words.describe(group("new_voter_burst", {"voter_ids": ["a"]}), x, "zh"),
        "rhythm": ops_words.describe(group("machine_timing", {"ip": "203.0.113.0/24"}), x, "zh"),
        "voters": ops_words.describe(group("machine_timing", {"voter_ids": ["a"]}), x, "zh"),
    }
    assert said["spike"].startswith("3号候选人3在约 10 分钟内获得 120 票（40 个投票人）")
    assert "每 5 分钟约 2 票" in said["spike"]
    assert "是普通网段（中位数 4 票）的 30 倍" in said["volume"]
    assert "有 95% 投给了3号候选人3" in said["share"]
    assert said["fresh"].startswith("40 个此前从未投过票的投票人")
    assert "定时器" in said["rhythm"]
    assert said["voters"].startswith("40 个投票人（网段 203.0.113.0/24）")
    assert ops_words.describe(group("candidate_spike", {}), x, "en") == "the English summary"
