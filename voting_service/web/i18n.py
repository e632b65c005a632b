"""Words of the pages in Chinese (first) and English, and the choice between them.

The pages render the server-side words; the ``JS`` keys travel to the browser in the page's
config block, so the vote feedback speaks the same language as the page.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import Literal

Lang = Literal["zh", "en"]
LANGS: tuple[Lang, ...] = ("zh", "en")
_QVALUE = re.compile(r"0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

MESSAGES: dict[Lang, dict[str, str]] = {
    "zh": {
        "html_lang": "zh-CN",
        "locale": "zh-CN",
        "other_lang": "English",
        "site": "网络投票",
        "open_votes": "正在进行的投票",
        "no_campaigns": "目前没有正在进行的投票。",
        "enter": "进入投票",
        "window": "投票时间：{start} 至 {end}（{tz}）",
        "tz_beijing": "北京时间",
        "rules": "每天可投 {n} 票，每位候选人每天限投 {k} 票",
        "total": "累计投票",
        "votes_unit": "票",
        "total_unit": "票",
        "status_open": "投票进行中",
        "status_upcoming": "投票尚未开始",
        "status_paused": "投票已暂停",
        "status_closed": "投票已结束",
        "status_draft": "投票尚未发布",
        "search": "搜索候选人",
        "search_ph": "输入姓名或编号",
        "region": "地区",
        "all_regions": "全部地区",
        "industry": "行业",
        "all_industries": "全部行业",
        "sort": "排序",
        "by_number": "按编号",
        "by_votes": "按票数",
        "apply": "筛选",
        "count": "共 {n} 位候选人",
        "none_found": "没有找到符合条件的候选人",
        "number": "{n}号",
        "vote": "投票",
        "vote_aria": "为{n}号{name}投票",
        "photo_alt": "{name}的照片",
        "details": "查看事迹",
        "back": "返回候选人列表",
        "deeds": "主要事迹",
        "share": "分享给朋友",
        "withdrawn": "已退出",
        "recommender": "推荐单位",
        "deed_type": "事迹类型",
        "honors": "主要荣誉",
        "video": "事迹视频",
        "results_title_year": "{y}年度投票结果公示",
        "results_link": "查看投票结果公示",
        "published_at": "公示时间：{at}",
        "rank": "名次",
        "valid_total": "有效票合计",
        "invalidated": "已作废的票",
        "by_reason": "作废原因",
        "digest": "账本摘要（SHA-256）",
        "ledger_download": "下载投票账本，自行核对",
        "verify_hint": ("账本逐条列出每一张票；任何人都可用 voting-service verify 重新计算摘要"
                        "和票数。"),
        "lookup": "查询我的投票",
        "lookup_ph": "投票编号（vote_id）",
        "lookup_none": "没有找到这张票。",
        "lookup_valid": "有效",
        "lookup_struck": "已作废（第 {n} 号作废决定）",
        "my_votes": "本机投出的票",
        "employer": "工作单位",
        "occupation": "职业",
        "noscript": "请开启 JavaScript 后再投票。",
        "show_all": "显示全部候选人",
        "full_page": "打开完整投票页面",
        "not_found": "页面不存在",
        "not_found_text": "没有找到这个投票或候选人，请检查链接是否完整。",
        "not_published": "结果尚未公布",
        "not_published_text": "投票结束后，主办方公布结果（公示）时，名单将显示在这里。",
        "back_to_vote": "返回投票页",
        "home": "返回首页",
        "wechat_failed": "微信登录未成功",
        "wechat_back": "返回投票页，使用其他方式投票",
        "organisers": "主办单位：{x}",
        "contact": "联系方式：{x}",
        "privacy": "隐私说明",
        "privacy_title": "隐私说明",
        "embed_refused": "该嵌入渠道未登记，无法显示投票。",
        "sms_title": "验证手机号",
        "sms_hint": "本次投票需验证手机号。号码仅用于防止刷票，不会公开。",
        "phone": "手机号",
        "code": "验证码",
        "send_code": "获取验证码",
        "confirm": "验证并投票",
        "cancel": "取消",
        "footer": "投票结果以主办方公布为准",
        "receipts": "我的投票凭证",
        "receipts_hint": ("每张选票都写入公开的透明日志（每 10 分钟签名一次）；"
                          "本页用日志的证明在浏览器里核对你的票已被收录。"),
        "log_key": "透明日志公钥（Ed25519）",
    },
    "en": {
        "html_lang": "en",
        "locale": "en-GB",
        "other_lang": "中文",
        "site": "Online vote",
        "open_votes": "Open votes",
        "no_campaigns": "There is no vote open right now.",
        "enter": "Go to the vote",
        "window": "Voting: {start} to {end} ({tz})",
        "tz_beijing": "Beijing time",
        "rules": "You have {n} votes a day, at most {k} per candidate per day",
        "rules_one": "You have 1 vote a day, at most {k} per candidate per day",
        "total": "Votes so far:",
        "votes_unit": "votes",
        "votes_unit_one": "vote",
        "total_unit": "",
        "status_open": "Voting is open",
        "status_upcoming": "Voting has not started yet",
        "status_paused": "Voting is paused",
        "status_closed": "Voting has ended",
        "status_draft": "This vote is not published yet",
        "search": "Search candidates",
        "search_ph": "Name or number",
        "region": "Region",
        "all_regions": "All regions",
        "industry": "Industry",
        "all_industries": "All industries",
        "sort": "Sort",
        "by_number": "By number",
        "by_votes": "By votes",
        "apply": "Filter",
        "count": "{n} candidates",
        "count_one": "1 candidate",
        "none_found": "No candidate matches your search",
        "number": "No. {n}",
        "vote": "Vote",
        "vote_aria": "Vote for No. {n}, {name}",
        "photo_alt": "Photo of {name}",
        "details": "Read more",
        "back": "Back to all candidates",
        "deeds": "Deeds",
        "share": "Share",
        "withdrawn": "Withdrawn",
        "recommender": "Recommended by",
        "deed_type": "Type of deeds",
        "honors": "Honours",
        "video": "Video",
        "results_title_year": "Published results, {y}",
        "results_link": "See the published results",
        "published_at": "Published {at}",
        "rank": "Rank",
        "valid_total": "Valid votes in total",
        "invalidated": "Struck-out votes",
        "by_reason": "Reason",
        "digest": "Ledger digest (SHA-256)",
        "ledger_download": "Download the vote ledger and check it yourself",
        "verify_hint": ("The ledger lists every vote; anyone can recompute the digest and the"
                        " counts with voting-service verify."),
        "lookup": "Find my vote",
        "lookup_ph": "vote id",
        "lookup_none": "No vote with this id.",
        "lookup_valid": "valid",
        "lookup_struck": "struck out (invalidation no. {n})",
        "my_votes": "Votes cast from this device",
        "employer": "Employer",
        "occupation": "Occupation",
        "noscript": "Please turn on JavaScript to vote.",
        "show_all": "Show all candidates",
        "full_page": "Open the full voting page",
        "not_found": "Page not found",
        "not_found_text": "This vote or candidate does not exist. Please check the link.",
        "not_published": "The results are not published yet",
        "not_published_text": ("When the vote has ended and the organisers publish the results,"
                               " they will be shown here."),
        "back_to_vote": "Back to the vote",
        "home": "Home",
        "wechat_failed": "WeChat sign-in did not succeed",
        "wechat_back": "Back to the vote page, to vote another way",
        "organisers": "Organised by {x}",
        "contact": "Contact: {x}",
        "privacy": "Privacy notice",
        "privacy_title": "Privacy notice",
        "embed_refused": "This embedding channel is not registered.",
        "sms_title": "Verify your phone",
        "sms_hint": "This vote needs your phone number. It only stops fake votes; nobody sees it.",
        "phone": "Phone number",
        "code": "Code",
        "send_code": "Send code",
        "confirm": "Verify and vote",
        "cancel": "Cancel",
        "footer": "Official results are announced by the organiser",
        "receipts": "My vote receipts",
        "receipts_hint": ("Every vote goes into a public transparency log, signed every 10"
                          " minutes; this page checks the log's proof in your browser that"
                          " your vote is in it."),
        "log_key": "Transparency log key (Ed25519)",
    },
}

JS: dict[Lang, dict[str, str]] = {
    "zh": {
        "ok": "投票成功！今日还可投 {n} 票",
        "ok_last": "投票成功！今天的票已全部投出，明天再来吧",
        "already": "今天已经为 TA 投过票了，明天再来吧",
        "quota": "今天的票已用完，{when}（{tz}）恢复",
        "tomorrow": "明天 {t}",
        "closed": "当前不在投票时间内，暂时无法投票",
        "paused": "投票已暂停，请稍后再来",
        "ended": "投票已结束，感谢您的关注",
        "upcoming": "投票尚未开始，敬请期待",
        "rate": "操作太频繁，请 {s} 秒后再试",
        "voter_rate": "当前网络新用户太多，请 {s} 秒后再试",
        "sms_rate": "验证码发送太频繁，请 {s} 秒后再试",
        "code_rate": "验证码尝试次数太多，请 {s} 秒后再试",
        "blocked": "当前账号或网络已被限制投票，如有疑问请联系主办方",
        "offline": "网络已断开，恢复连接后将自动重试",
        "network": "网络不稳定，投票没有送达，请稍后再试",
        "busy": "投票人数较多，本次未计入，请稍后再试",
        "pow": "正在进行安全验证，请稍候…",
        "pow_pct": "正在进行安全验证，请稍候…（{p}%）",
        "pow_fail": "安全验证未通过，请再试一次",
        "insecure": "请通过 https 链接打开本页后投票",
        "voter_fail": "暂时无法投票，请刷新页面后重试",
        "login": "请先登录后再投票",
        "wechat_only": "请在微信中打开本页面投票",
        "missing": "该候选人不存在",
        "gone": "该候选人已退出评选，不再接受投票",
        "generic": "投票没有成功，请稍后再试",
        "voted": "今日已投",
        "voting": "投票中…",
        "vote": "投票",
        "count": "共 {n} 位候选人",
        "votes_unit": "票",
        "quota_button": "今日票已用完",
        "copied": "链接已复制，快去分享吧",
        "bad_phone": "请输入正确的 11 位手机号",
        "sms_sent": "验证码已发送，请注意查收",
        "bad_code": "验证码错误或已过期",
        "resend": "{s} 秒后重发",
        "send_code": "获取验证码",
        "rc_wait": "等待下一次日志签名",
        "rc_ok": "已收录 ✓ 已用第 {n} 条日志的树头核验",
        "rc_bad": "核验失败：证明与树头不符",
        "rc_nosig": "（本浏览器不能核验签名）",
        "rc_badsig": "（树头签名不符！）",
    },
    "en": {
        "ok": "Thank you! {n} votes left today",
        "ok_one": "Thank you! 1 vote left today",
        "ok_last": "Thank you! That was your last vote today; come back tomorrow",
        "already": "You have already voted for this candidate today",
        "quota": "No votes left today. They come back at {when} ({tz})",
        "tomorrow": "{t} tomorrow",
        "closed": "Voting is not open right now",
        "paused": "Voting is paused; please come back later",
        "ended": "Voting has ended. Thank you for your interest",
        "upcoming": "Voting has not started yet",
        "rate": "Too many votes from your network. Try again in {s} s",
        "voter_rate": "Too many new voters from your network. Try again in {s} s",
        "sms_rate": "Too many codes requested. Try again in {s} s",
        "code_rate": "Too many code attempts. Try again in {s} s",
        "blocked": "Voting is blocked for this account or network. Please contact the organiser",
        "offline": "You are offline. The vote will be sent when you are back online",
        "network": "The network is unstable and the vote did not arrive. Please try again",
        "busy": "Too many people are voting; this vote was not counted. Please try again",
        "pow": "Running a security check…",
        "pow_pct": "Running a security check… ({p}%)",
        "pow_fail": "The security check failed. Please try again",
        "insecure": "Please open this page through its https link to vote",
        "voter_fail": "Voting is not possible right now. Please reload the page",
        "login": "Please log in to vote",
        "wechat_only": "Open this page in WeChat to vote",
        "missing": "This candidate does not exist",
        "gone": "This candidate has withdrawn and takes no more votes",
        "generic": "The vote did not go through. Please try again",
        "voted": "Voted today",
        "voting": "Voting…",
        "vote": "Vote",
        "count": "{n} candidates",
        "count_one": "1 candidate",
        "votes_unit": "votes",
        "votes_unit_one": "vote",
        "quota_button": "None left today",
        "copied": "Link copied",
        "bad_phone": "Please enter an 11-digit mobile number",
        "sms_sent": "The code is on its way",
        "bad_code": "The code is wrong or has expired",
        "resend": "Resend in {s} s",
        "send_code": "Send code",
        "rc_wait": "waiting for the log's next signed head",
        "rc_ok": "included ✓ verified against the head of {n} entries",
        "rc_bad": "check failed: the proof does not match the head",
        "rc_nosig": "(this browser cannot check the signature)",
        "rc_badsig": "(the head's signature does not verify!)",
    },
}


def pick(query_lang: str | None, accept_language: str | None) -> Lang:
    """``?lang=`` wins; else the browser's most preferred of zh/en; else Chinese."""
    if query_lang in LANGS:
        return query_lang
    best: tuple[float, int, Lang] | None = None
    for position, item in enumerate((accept_language or "").split(",")[:20]):
        tag, _, params = item.strip().partition(";")
        primary = tag.strip().lower().split("-")[0]
        if primary not in LANGS:
            continue
        q = 1.0
        params = params.strip()
        if params.startswith("q="):
            if _QVALUE.fullmatch(params[2:]) is None:  # RFC 9110 qvalue: ASCII, 0 to 1
                continue
            q = float(params[2:])
        candidate = (q, -position, primary)
        if q > 0 and (best is None or candidate > best):
            best = candidate
    return best[2] if best else "zh"


class Words:
    """The page's words in one language: ``t("key", n=3)``."""

    def __init__(self, lang: Lang, messages: Mapping[Lang, Mapping[str, str]] = MESSAGES,
                 js: Mapping[Lang, Mapping[str, str]] = JS) -> None:
        self.lang = lang
        self.messages: Mapping[str, str] = messages[lang]
        self.js: Mapping[str, str] = js[lang]

    def __call__(self, key: str, **values: object) -> str:
        """``n=1`` picks the key's ``_one`` form where the language has one ("1 vote")."""
        if values.get("n") == 1 and f"{key}_one" in self.messages:
            key = f"{key}_one"
        text = self.messages[key]
        return text.format(**values) if values else text

    def tz_name(self, timezone: str) -> str:
        return self("tz_beijing") if timezone in ("Asia/Shanghai", "Asia/Chongqing") else timezone

    def moment(self, when: dt.datetime, with_year: bool = True) -> str:
        # 23:59:59 reads better as 23:59 than as the next day's 00:00
        clock = when.strftime("%H:%M")
        if self.lang == "zh":
            day = f"{when.month}月{when.day}日"
            return f"{when.year}年{day} {clock}" if with_year else f"{day} {clock}"
        day = f"{when.day} {_MONTHS[when.month - 1]}"
        return f"{day} {when.year}, {clock}" if with_year else f"{day}, {clock}"

    def window(self, opens: dt.datetime, closes: dt.datetime, timezone: str) -> str:
        same_year = opens.year == closes.year
        return self(
            "window",
            start=self.moment(opens),
            end=self.moment(closes, with_year=not same_year or self.lang == "en"),
            tz=self.tz_name(timezone),
        )


def add_words(into: Mapping[Lang, dict[str, str]], more: Mapping[Lang, Mapping[str, str]],
              source: str) -> None:
    """Merge a module's word table into a page family's, refusing a key both define
    differently: a silent override once replaced the footer's contact line on every page."""
    for lang, words in more.items():
        clash = sorted(k for k, v in words.items() if into[lang].get(k, v) != v)
        if clash:
            raise ValueError(f"{source} redefines {lang} words {clash}")
        into[lang].update(words)


def _merge_objection_words() -> None:
    from .pages.objection_words import OBJECTION  # the 公示 and objections (issue 24 §2)

    add_words(MESSAGES, OBJECTION, "objection_words")


_merge_objection_words()
