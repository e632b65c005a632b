# ruff: noqa: E501  (sentences of the pages, one a line)
"""Words of the 公示 and objection parts of the results page (issue 24 §2), Chinese first;
merged into ``i18n.MESSAGES``."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..i18n import Lang

OBJECTION: dict[Lang, dict[str, str]] = {
    "zh": {
        "gongshi": "公示期", "gongshi_period": "公示期：{start} 至 {end}（{n} 个工作日）",
        "gongshi_over": "公示期已于 {end} 结束。",
        "organiser_contact": "主办方联系方式", "contact_phone": "电话", "contact_address": "地址", "contact_email": "电子邮箱",
        "objection_title": "对候选人提出异议",
        "objection_help": "异议须以真实姓名提出，并留下联系电话和通信地址，以便主办方书面答复。个人信息只用于答复异议，答复结束后按规定删除。",
        "o_candidate": "候选人", "o_choose": "请选择", "o_name": "真实姓名", "o_phone": "手机号码",
        "o_code": "短信验证码", "o_send_code": "获取验证码", "o_code_sent": "验证码已发送到 {p}，请在下方填写。",
        "o_address": "通信地址", "o_text": "异议内容", "o_text_help": "请写明事实和依据（10 到 5000 字）。",
        "o_file": "证明材料（可选，PDF、JPG 或 PNG，不超过 2 MB）", "o_submit": "提交异议",
        "o_thanks": "异议已收到（编号 {id}），主办方将按您留下的联系方式答复。",
        "o_required": "必填。", "o_phone_bad": "请填写正确的 11 位手机号码。", "o_code_bad": "验证码错误或已过期。",
        "o_code_needed": "请先获取并填写短信验证码。",
        "o_text_short": "请至少写 10 个字。", "o_text_long": "最多 5000 字。", "o_long": "最多 {n} 个字。",
        "o_file_big": "文件不能超过 2 MB。", "o_file_type": "只接受 PDF、JPG 或 PNG 文件。",
        "o_rate": "提交太频繁，请 {m} 分钟后再试。", "o_closed": "公示期外不接受异议。",
        "o_counts": "公示期内收到的异议", "o_count_col": "异议数", "o_none": "公示期内没有收到异议。",
    },
    "en": {
        "gongshi": "Public notice (公示)", "gongshi_period": "Public notice: {start} to {end} ({n} working days)",
        "gongshi_over": "The public notice ended on {end}.",
        "organiser_contact": "The organisers' contact", "contact_phone": "Phone", "contact_address": "Address", "contact_email": "E-mail",
        "objection_title": "Object to a candidate",
        "objection_help": "Objections are made under your real name, with a phone number and a postal address so the organisers can answer in writing. Your details serve only to answer you and are deleted afterwards.",
        "o_candidate": "Candidate", "o_choose": "Choose", "o_name": "Real name", "o_phone": "Mobile number",
        "o_code": "SMS code", "o_send_code": "Send code", "o_code_sent": "A code was sent to {p}; enter it below.",
        "o_address": "Postal address", "o_text": "Your objection", "o_text_help": "State the facts and your grounds (10 to 5000 characters).",
        "o_file": "Evidence (optional; PDF, JPG or PNG, up to 2 MB)", "o_submit": "Submit the objection",
        "o_thanks": "Objection received (no. {id}). The organisers will answer you.",
        "o_required": "Required.", "o_phone_bad": "An 11-digit mobile number, please.", "o_code_bad": "The code is wrong or has expired.",
        "o_code_needed": "Request the SMS code and enter it first.",
        "o_text_short": "At least 10 characters, please.", "o_text_long": "At most 5000 characters.", "o_long": "At most {n} characters.",
        "o_file_big": "The file may not exceed 2 MB.", "o_file_type": "PDF, JPG or PNG only.",
        "o_rate": "Too many submissions; try again in {m} minutes.", "o_closed": "Objections are taken during the public notice only.",
        "o_counts": "Objections received during the public notice", "o_count_col": "Objections", "o_none": "No objection was received.",
    },
}
