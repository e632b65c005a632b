"""Alibaba Cloud and Tencent Cloud SMS senders, speaking each provider's HTTP API directly.

The providers' Python SDKs (``alibabacloud-dysmsapi20170525``, ``tencentcloud-sdk-python-sms``)
are synchronous: each send would hold a thread of a pool the event loop shares, and they
bring a dozen dependencies (Tea runtime, their own retry and timeout layers) for one signed
POST. Here each sender is one ``httpx`` request with the signature its provider documents:

- Aliyun ``SendSms`` (API version 2017-05-25), RPC style, signature version 1.0
  (HMAC-SHA1 over ``POST&%2F&<percent-encoded sorted query>`` with ``secret + "&"``);
- Tencent ``SendSms`` (API version 2021-01-11), ``TC3-HMAC-SHA256`` (canonical request,
  string to sign, key derived from the date, the service ``sms`` and ``tc3_request``).

Each answer is mapped to one outcome: sent, or a problem with a stable code — the number is
throttled (``SmsThrottled``), invalid (``SmsNumberRefused``), the account is out of balance
(``SmsOutOfBalance``) or anything else went wrong (``SmsProviderError``). The endpoints are
settings, so the tests run both against local stand-ins that check the signatures.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import logging
import secrets
import time
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from ..errors import (
    SmsNumberRefused,
    SmsOutOfBalance,
    SmsProviderError,
    SmsThrottled,
    VotingError,
)

log = logging.getLogger(__name__)

ALIYUN_THROTTLED = frozenset({
    "isv.BUSINESS_LIMIT_CONTROL", "isv.DAY_LIMIT_CONTROL", "isv.MINUTE_LIMIT_CONTROL",
    "isv.HOUR_LIMIT_CONTROL", "Throttling.User", "Throttling",
})
ALIYUN_BAD_NUMBER = frozenset({
    "isv.MOBILE_NUMBER_ILLEGAL", "isv.MOBILE_COUNT_OVER_LIMIT", "isv.BLACK_KEY_CONTROL_LIMIT",
})
ALIYUN_NO_BALANCE = frozenset({"isv.AMOUNT_NOT_ENOUGH", "isv.OUT_OF_SERVICE"})

TENCENT_THROTTLED = frozenset({
    "LimitExceeded.PhoneNumberDailyLimit", "LimitExceeded.PhoneNumberOneHourLimit",
    "LimitExceeded.PhoneNumberThirtySecondLimit", "LimitExceeded.PhoneNumberSameContentDailyLimit",
    "LimitExceeded.DailyLimit", "LimitExceeded.DeliveryFrequencyLimit", "RequestLimitExceeded",
})
TENCENT_BAD_NUMBER = frozenset({
    "InvalidParameterValue.IncorrectPhoneNumber", "FailedOperation.PhoneNumberInBlacklist",
    "UnsupportedOperation.ContainDomesticAndInternationalPhoneNumber",
})
TENCENT_NO_BALANCE = frozenset({"FailedOperation.InsufficientBalanceInSmsPackage"})


def outcome_error(code: str, throttled: frozenset[str], bad_number: frozenset[str],
                  no_balance: frozenset[str]) -> VotingError:
    """The problem a provider's error code stands for (its code kept in the log and detail)."""
    if code in throttled:
        return SmsThrottled(extra={"provider_code": code})
    if code in bad_number:
        return SmsNumberRefused(extra={"provider_code": code})
    if code in no_balance:
        log.error("SMS account out of balance (%s): no code can be sent", code)
        return SmsOutOfBalance(extra={"provider_code": code})
    log.error("SMS provider refused the message: %s", code)
    return SmsProviderError(extra={"provider_code": code})


def percent(text: str) -> str:
    """Aliyun's percent-encoding: RFC 3986 unreserved characters stay, UTF-8 otherwise
    (space is %20, ``*`` %2A, ``~`` kept)."""
    return quote(text, safe="~")


def aliyun_signature(method: str, params: dict[str, str], secret: str) -> str:
    """Signature version 1.0 of an RPC-style request, ``Signature`` left out of ``params``."""
    query = "&".join(f"{percent(k)}={percent(v)}" for k, v in sorted(params.items()))
    to_sign = f"{method}&{percent('/')}&{percent(query)}"
    digest = hmac.new(f"{secret}&".encode(), to_sign.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


class AliyunSender:
    """Alibaba Cloud SMS ``SendSms``: the template gets ``{"code": …}`` (``${code}``)."""

    name = "aliyun"

    def __init__(self, endpoint: str, access_key_id: str, access_key_secret: str,
                 region: str, sign_name: str, template: str, timeout: float) -> None:
        self.endpoint = endpoint.rstrip("/") + "/"
        self.key_id = access_key_id
        self.key_secret = access_key_secret
        self.region = region
        self.sign_name = sign_name
        self.template = template
        self.timeout = timeout

    def request_params(self, phone: str, code: str, now: float) -> dict[str, str]:
        params = {
            "AccessKeyId": self.key_id, "Action": "SendSms", "Format": "JSON",
            "RegionId": self.region, "SignatureMethod": "HMAC-SHA1",
            "SignatureNonce": secrets.token_hex(16), "SignatureVersion": "1.0",
            "Timestamp": dt.datetime.fromtimestamp(now, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "Version": "2017-05-25", "PhoneNumbers": phone, "SignName": self.sign_name,
            "TemplateCode": self.template,
            "TemplateParam": json.dumps({"code": code}, separators=(",", ":")),
        }
        params["Signature"] = aliyun_signature("POST", params, self.key_secret)
        return params

    async def send(self, phone: str, code: str, text: str) -> None:
        params = self.request_params(phone, code, time.time())
        try:
            async with httpx.AsyncClient(timeout=self.timeout) as client:
                r = await client.post(self.endpoint, data=params)
            body: Any = r.json()
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("Aliyun SMS unreachable or garbled: %s", exc)
            raise SmsProviderError("the SMS provider is unreachable") from exc
        result = str(body.get("Code", "")) if isinstance(body, dict) else ""
        if r.status_code == 200 and result == "OK":
            return
        raise outcome_error(result or f"HTTP {r.status_code}", ALIYUN_THROTTLED,
                            ALIYUN_BAD_NUMBER, ALIYUN_NO_BALANCE)


def _sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tc3_authorization(secret_id: str, secret_key: str, host: str, payload: bytes,
                      timestamp: int, service: str = "sms") -> str:
    """The ``Authorization`` header of a TC3-HMAC-SHA256 POST to ``/`` (JSON body, signed
    headers ``content-type;host``)."""
    date = dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%Y-%m-%d")
    canonical = "\n".join([
        "POST", "/", "", f"content-type:{TC3_CONTENT_TYPE}\nhost:{host}\n",
        "content-type;host", _sha256_hex(payload),
    ])
    scope = f"{date}/{service}/tc3_request"
    to_sign = "\n".join(["TC3-HMAC-SHA256", str(timestamp), scope,
                         _sha256_hex(canonical.encode())])
    key = f"TC3{secret_key}".encode()
    for part in (date, service, "tc3_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    return (f"TC3-HMAC-SHA256 Credential={secret_id}/{scope}, "
            f"SignedHeaders=content-type;host, Signature={signature}")


TC3_CONTENT_TYPE = "application/json; charset=utf-8"


class TencentSender:
    """Tencent Cloud SMS ``SendSms`` v2021-01-11: the template gets the code as ``{1}``."""

    name = "tencent"

    def __init__(self, endpoint: str, secret_id: str, secret_key: str, region: str,
                 app_id: str, sign_name: str, template: str, timeout: float) -> None:
        self.endpoint = endpoint.rstrip("/") + "/"
        self.host = urlsplit(self.endpoint).netloc.lower()
        self.secret_id = secret_id
        self.secret_key = secret_key
        self.region = region
        self.app_id = app_id
        self.sign_name = sign_name
        self.template = template
        self.timeout = timeout

    def request(self, phone: str, code: str, now: float) -> tuple[bytes, dict[str, str]]:
        payload = json.dumps({
            "PhoneNumberSet": [f"+86{phone}"], "SmsSdkAppId": self.app_id,
            "SignName": self.sign_name, "TemplateId": self.template,
            "TemplateParamSet": [code],
        }, ensure_ascii=False, separators=(",", ":")).encode()
        stamp = int(now)
        headers = {
            "Authorization": tc3_authorization(self.secret_id, self.secret_key, self.host,
                                               payload, stamp),
            "Content-Type": TC3_CONTENT_TYPE, "Host": self.host, "X-TC-Action": "SendSms",
            "X-TC-Timestamp": str(stamp), "X-TC-Version": "2021-01-11",
            "X-TC-Region": self.region,
        }
        return payload, headers

    async def send(self, phone: str, code: str, text: str) -> None:
        payload, headers = self.request(phone, code, time.time())
        try:
            async with httpx.AsyncClient(timeout=self.timeout) as client:
                r = await client.post(self.endpoint, content=payload, headers=headers)
            body: Any = r.json()
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("Tencent SMS unreachable or garbled: %s", exc)
            raise SmsProviderError("the SMS provider is unreachable") from exc
        response = body.get("Response") if isinstance(body, dict) else None
        if not isinstance(response, dict):
            raise outcome_error(f"HTTP {r.status_code}", TENCENT_THROTTLED, TENCENT_BAD_NUMBER,
                                TENCENT_NO_BALANCE)
        error = response.get("Error")
        if isinstance(error, dict):
            raise outcome_error(str(error.get("Code", "")), TENCENT_THROTTLED,
                                TENCENT_BAD_NUMBER, TENCENT_NO_BALANCE)
        statuses = response.get("SendStatusSet") or [{}]
        result = str(statuses[0].get("Code", "")) if isinstance(statuses[0], dict) else ""
        if result == "Ok":
            return
        raise outcome_error(result or "no SendStatusSet", TENCENT_THROTTLED,
                            TENCENT_BAD_NUMBER, TENCENT_NO_BALANCE)
