"""Words of the ops console in Chinese (first) and English, and suspicious groups in words.

Chosen like the public pages' (``i18n.pick``: ``?lang=``, then the browser); the ``JS``
keys travel to the browser in the page's config block.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...vote.registry import LiveCampaign
from .. import i18n
from ..i18n import Lang
from .organiser_words import ORGANISER
from .staff_words import STAFF_MESSAGES

REASONS = ("already_voted", "daily_quota_exhausted", "rate_limited", "challenge_failed",
           "blocked", "voting_closed", "unavailable")
"""Refusals the console charts one by one; any other code is shown as ``other``."""

MESSAGES: dict[Lang, dict[str, str]] = {
    "zh": {**STAFF_MESSAGES["zh"],
        "html_lang": "zh-CN", "other_lang": "English", "site": "投票运营台",
        "login_title": "登录运营台",
        "login_hint": "每位值班人员使用本人账号登录：账号、密码，再加身份验证器的验证码。",
        "login": "登录", "login_wrong": "账号或密码不正确，还可尝试 {n} 次。",
        "login_locked": "尝试次数过多，请 {m} 分钟后再试。",
        "login_unavailable": "暂时无法登录（Redis 不可用），请稍后再试。",
        "logout": "退出登录", "role_admin": "管理员", "role_ops": "值守（只读）",
        "campaigns": "投票活动", "campaign": "活动", "year": "评选年度", "state": "状态",
        "window": "投票时间",
        "total": "累计票数", "rate": "当前票/秒", "open_console": "查看",
        "none": "还没有投票活动。",
        "status_open": "进行中", "status_upcoming": "未开始", "status_paused": "已暂停",
        "status_closed": "已结束", "status_draft": "草稿",
        "back": "全部活动", "pause": "暂停投票", "resume": "恢复投票",
        "downloads": "下载结果", "csv": "排名 CSV", "xlsx": "完整 Excel",
        "kpi_total": "有效票总数", "kpi_rate": "当前票/秒", "kpi_30": "近30分钟通过",
        "kpi_rejected": "近30分钟拒绝", "kpi_updated": "更新于",
        "chart_votes": "每秒投票数（近30分钟）", "chart_rejects": "每秒拒绝数（按原因，近30分钟）",
        "by_channel": "按渠道（近30分钟通过票）", "by_identity": "按身份方式（近30分钟通过票）",
        "health": "系统健康", "ranking": "实时排名",
        "col_rank": "名次", "col_number": "编号", "col_name": "姓名", "col_region": "地区",
        "col_industry": "行业", "col_votes": "票数", "col_share": "占比", "col_10": "近10分钟",
        "suspicious": "疑似刷票", "refresh": "刷新",
        "blocklist": "黑名单", "channels": "媒体渠道", "embed_code": "嵌入代码",
        "no_channels": "还没有登记媒体渠道。",
        "block_kind": "类型", "block_voter": "投票人", "block_ip": "IP/网段",
        "block_value": "投票人 ID 或 IP/网段", "block_reason": "原因",
        "block_scope": "范围", "scope_campaign": "仅本活动", "scope_all": "全部活动",
        "block_hours": "有效期（小时，空=永久）", "block_add": "加入黑名单",
        "ops_readonly": "值守角色只读：暂停、作废和黑名单修改需要管理员账号。",
        "noscript": "运营台需要开启 JavaScript。",
        "not_found": "没有这个投票活动。",
    },
    "en": {**STAFF_MESSAGES["en"],
        "html_lang": "en", "other_lang": "中文", "site": "Vote operations",
        "login_title": "Sign in to the console",
        "login_hint": "Everyone on duty signs in with their own account: name, password, "
                      "then the code of their authenticator app.",
        "login": "Sign in", "login_wrong": "Wrong name or password. {n} tries left.",
        "login_locked": "Too many tries. Please wait {m} minutes.",
        "login_unavailable": "Signing in is not possible right now (Redis is unreachable).",
        "logout": "Sign out", "role_admin": "admin", "role_ops": "ops (read-only)",
        "campaigns": "Campaigns", "campaign": "Campaign", "year": "Year", "state": "State",
        "window": "Window",
        "total": "Total votes", "rate": "Votes/s now", "open_console": "Open",
        "none": "No campaign yet.",
        "status_open": "open", "status_upcoming": "upcoming", "status_paused": "paused",
        "status_closed": "closed", "status_draft": "draft",
        "back": "All campaigns", "pause": "Pause voting", "resume": "Resume voting",
        "downloads": "Results", "csv": "Ranking CSV", "xlsx": "Full Excel",
        "kpi_total": "Valid votes", "kpi_rate": "Votes/s now", "kpi_30": "Accepted, 30 min",
        "kpi_rejected": "Refused, 30 min", "kpi_updated": "Updated",
        "chart_votes": "Votes per second (last 30 minutes)",
        "chart_rejects": "Refusals per second by reason (last 30 minutes)",
        "by_channel": "By channel (accepted, 30 min)",
        "by_identity": "By identity (accepted, 30 min)",
        "health": "Health", "ranking": "Live ranking",
        "col_rank": "Rank", "col_number": "No.", "col_name": "Name", "col_region": "Region",
        "col_industry": "Industry", "col_votes": "Votes", "col_share": "Share",
        "col_10": "Last 10 min",
        "suspicious": "Suspicious groups", "refresh": "Refresh",
        "blocklist": "Blocklist", "channels": "Media channels", "embed_code": "Embed code",
        "no_channels": "No channel registered yet.",
        "block_kind": "Kind", "block_voter": "voter", "block_ip": "IP/CIDR",
        "block_value": "Voter id or IP/CIDR", "block_reason": "Reason",
        "block_scope": "Scope", "scope_campaign": "this campaign", "scope_all": "every campaign",
        "block_hours": "Hours (empty = for good)", "block_add": "Block",
        "ops_readonly": "The ops role reads only: pausing, striking out and blocking need an "
                        "admin account.",
        "noscript": "The console needs JavaScript.",
        "not_found": "There is no such campaign.",
    },
}

JS: dict[Lang, dict[str, str]] = {
    "zh": {
        "confirm_pause": "确定暂停投票吗？所有节点将在 2 秒内停止接受投票。",
        "confirm_resume": "确定恢复投票吗？",
        "confirm_remove": "确定将该条目移出黑名单吗？",
        "confirm_strike": "确定作废这一组投票吗？此操作会记录在审计日志中，且不可撤销。",
        "confirm": "确定", "cancel": "取消", "reason": "作废原因（必填）",
        "strike": "作废该组", "struck": "已作废 {n} 票", "failed": "操作失败：{d}",
        "offline": "连接中断，正在重试…", "none_suspicious": "暂未发现可疑投票。",
        "loading": "加载中…", "score": "可疑度 {s}", "evidence": "证据",
        "ev_time": "时间", "ev_votes": "票数", "ev_voters": "投票人", "ev_networks": "网段",
        "ev_channels": "渠道", "ev_candidates": "候选人", "ev_attempts": "今日尝试次数",
        "no_blocks": "黑名单为空。", "remove": "移除", "forever": "永久",
        "until": "至 {t}", "all_campaigns": "全部活动", "added": "已加入黑名单",
        "removed": "已移出黑名单", "paused": "投票已暂停", "resumed": "投票已恢复",
        "copy": "复制", "copied": "已复制", "k_voter": "投票人",
        "accepted": "通过", "other": "其他",
        "already_voted": "重复投票", "daily_quota_exhausted": "当日票数用完",
        "rate_limited": "频率超限", "challenge_failed": "安全验证失败", "blocked": "黑名单拦截",
        "voting_closed": "投票未开放", "unavailable": "服务不可用",
        "anonymous": "匿名", "sms": "短信验证", "partner": "合作平台登录", "wechat": "微信登录",
        "unknown": "未知",
        "direct": "直接访问", "?": "未登记渠道",
        "per_s": "{n} 票/秒",
        "h_redis": "Redis", "h_postgres": "PostgreSQL", "h_durability": "Redis 持久化",
        "h_backlog": "待写入账本", "h_lag": "写入延迟", "h_drift": "计票偏差",
        "h_up": "正常", "h_down": "不可用", "h_unknown": "暂无数据",
        "w_redis": "Redis 无法连接：新投票会失败（503），请立即检查 Redis。",
        "w_postgres": "PostgreSQL 无法连接：投票仍可进行，但账本暂不能写入，积压会增长。",
        "w_durability": "Redis 未开启可靠持久化：故障时可能丢失已确认的投票。",
        "w_lag": "账本写入落后 {s} 秒：请检查 flusher 进程是否在运行。",
        "w_drift": "计票与账本不一致（偏差 {n} 票）：请运行 voting-service reconcile 核对。",
        "h_durable": "可靠", "h_not_durable": "不可靠",
        "w_stale": "健康数据已有 {s} 秒没有更新，以上数字可能已过时。",
        "all_ok": "一切正常。", "seconds": "{n} 秒", "entries": "{n} 条",
        "h_repairs": "偏差自动修复",
        "repairs": "{f} 次：计票修正 {t} 票，恢复 {v} 票的配额与幂等记录",
    },
    "en": {
        "confirm_pause": "Pause voting? Every worker stops taking votes within 2 seconds.",
        "confirm_resume": "Resume voting?",
        "confirm_remove": "Remove this entry from the blocklist?",
        "confirm_strike": "Strike out this group's votes? This is logged and cannot be undone.",
        "confirm": "Confirm", "cancel": "Cancel", "reason": "Reason (required)",
        "strike": "Strike out", "struck": "{n} votes struck out", "failed": "Failed: {d}",
        "offline": "Connection lost, retrying…", "none_suspicious": "Nothing suspicious found.",
        "loading": "Loading…", "score": "score {s}", "evidence": "Evidence",
        "ev_time": "Time", "ev_votes": "Votes", "ev_voters": "Voters", "ev_networks": "Networks",
        "ev_channels": "Channels", "ev_candidates": "Candidates", "ev_attempts": "Tries today",
        "no_blocks": "The blocklist is empty.", "remove": "Remove", "forever": "for good",
        "until": "until {t}", "all_campaigns": "every campaign", "added": "Blocked",
        "removed": "Removed from the blocklist", "paused": "Voting paused",
        "resumed": "Voting resumed", "copy": "Copy", "copied": "Copied", "k_voter": "voter",
        "accepted": "accepted", "other": "other",
        "already_voted": "already voted", "daily_quota_exhausted": "daily quota used",
        "rate_limited": "rate limited", "challenge_failed": "challenge failed",
        "blocked": "blocked", "voting_closed": "closed", "unavailable": "unavailable",
        "anonymous": "anonymous", "sms": "SMS", "partner": "partner sign-in",
        "wechat": "WeChat", "unknown": "unknown", "direct": "direct", "?": "unlisted channel",
        "per_s": "{n} votes/s",
        "h_redis": "Redis", "h_postgres": "PostgreSQL", "h_durability": "Redis durability",
        "h_backlog": "Ledger backlog", "h_lag": "Flusher lag", "h_drift": "Tally drift",
        "h_up": "up", "h_down": "down", "h_unknown": "no data yet",
        "w_redis": "Redis is unreachable: new votes fail (503). Check Redis now.",
        "w_postgres": "PostgreSQL is unreachable: voting goes on, but the ledger backlog grows.",
        "w_durability": "Redis is not durable: acknowledged votes could be lost in a crash.",
        "w_lag": "The ledger is {s} s behind: check that the flusher is running.",
        "w_drift": "Tallies and ledger disagree by {n} votes: run voting-service reconcile.",
        "h_durable": "durable", "h_not_durable": "NOT durable",
        "w_stale": "The health figures are {s} s old and may be out of date.",
        "all_ok": "All is well.", "seconds": "{n} s", "entries": "{n}",
        "h_repairs": "Drift repaired",
        "repairs": "{f} time(s): tallies moved by {t}, {v} vote(s) given back quota and"
                   " idempotency record",
    },
}


i18n.add_words(MESSAGES, ORGANISER, "organiser_words")  # the organisers' pages


def words(query_lang: str | None, accept_language: str | None) -> i18n.Words:
    return i18n.Words(i18n.pick(query_lang, accept_language), MESSAGES, JS)


def _minutes(seconds: float) -> str:
    return f"{max(1, round(seconds / 60))}"


def _candidate(live: LiveCampaign, cid: str | None, lang: Lang) -> str:
    cand = live.candidates.get(cid or "")
    if cand is None:
        return cid or "?"
    return f"{cand.number}号{cand.name}" if lang == "zh" else f"No. {cand.number} {cand.name}"


def _prefix(evidence: Mapping[str, Any]) -> str:
    prefixes = evidence.get("prefixes") or {}
    return ", ".join(sorted(prefixes, key=lambda p: -prefixes[p])[:3]) or "?"


def describe(group: Mapping[str, Any], live: LiveCampaign, lang: Lang) -> str:
    """One sentence a duty officer can read aloud: what the detector saw, in numbers."""
    ev = group.get("evidence", {})
    signal = group.get("signal")
    votes, voters = ev.get("votes", 0), ev.get("voters", 0)
    span = _minutes(float(ev.get("span_seconds", 0)))
    net = _prefix(ev)
    cand = _candidate(live, ev.get("candidate_id"), lang)
    if lang != "zh":
        return str(group.get("summary", ""))
    if signal == "candidate_spike":
        bucket = _minutes(float(ev.get("bucket_seconds", 300)))
        base = float(ev.get("baseline_per_bucket", 1))
        return (f"{cand}在约 {span} 分钟内获得 {votes} 票（{voters} 个投票人），"
                f"远高于其前一小时每 {bucket} 分钟约 {base:g} 票的水平。")
    if signal == "prefix_volume":
        median = max(1, int(ev.get("median_votes_per_network", 1)))
        return (f"网段 {net} 投出 {votes} 票（{voters} 个投票人），"
                f"是普通网段（中位数 {median} 票）的 {votes / median:.0f} 倍。")
    if signal == "prefix_candidate":
        share = float(ev.get("share", 0))
        return f"网段 {net} 的 {votes} 票中有 {share:.0%} 投给了{cand}，投票对象高度集中。"
    if signal == "new_voter_burst":
        return f"{voters} 个此前从未投过票的投票人在约 {span} 分钟内从网段 {net} 集中出现并投票。"
    if signal == "machine_timing":
        if "ip" in group.get("criteria", {}):
            return f"网段 {net} 的 {votes} 票到达间隔像定时器一样均匀，疑似脚本投票。"
        return (f"{voters} 个投票人（网段 {net}）的投票间隔像机器一样规律，"
                f"共 {votes} 票，疑似脚本投票。")
    return str(group.get("summary", ""))
