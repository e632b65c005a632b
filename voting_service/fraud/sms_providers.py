"""Alibaba Cloud and Tencent Cloud SMS senders, through the providers' official SDKs.

- Aliyun ``SendSms`` (API 2017-05-25) with ``alibabacloud-dysmsapi20170525``: the SDK signs
  with signature V3 (``ACS3-HMAC-SHA256``, the parameters in the query string);
- Tencent ``SendSms`` (API 2021-01-11) with ``tencentcloud-sdk-python-sms``:
  ``TC3-HMAC-SHA256`` over a JSON body.

Both SDKs are synchronous (``requests``). A send runs in a small thread pool of its own, not
the event loop's default executor (which resolves host names for everything else), under a
deadline of ``timeout`` seconds: a slow provider costs the voter a problem, never the loop.
The SDKs' own connect and read timeouts are a second longer (``SDK_GRACE``), so the deadline
is what answers and a thread it leaves behind ends soon after; neither SDK is let retry (a
retried ``SendSms`` can send a second message). The SDKs are imported when a sender is
made: a service that sends with ``console`` or ``http`` never loads them. Aliyun's
asynchronous variant is not used: it builds a TLS context and an aiohttp session on the
loop for every call.

Each answer is mapped to one outcome: sent, or a problem with a stable code — the number is
throttled (``SmsThrottled``), invalid (``SmsNumberRefused``), the account is out of balance
(``SmsOutOfBalance``) or anything else went wrong (``SmsProviderError``). The endpoints are
settings (scheme and host; the SDKs post to ``/``), so the tests run both SDKs against
local stand-ins that check the signatures.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import re
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar
from urllib.parse import urlsplit

from ..errors import (
    SmsNumberRefused,
    SmsOutOfBalance,
    SmsProviderError,
    SmsThrottled,
    VotingError,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

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
TENCENT_UNREACHABLE = frozenset({"ClientNetworkError", "ServerNetworkError"})
"""The Tencent SDK's own codes for no answer and for an HTTP status other than 200."""

SEND_THREADS = 8
"""Sends under way at once, per process. A send takes a fraction of a second, so this is
dozens a second — far above the hourly budget's pace; past it, sends queue (within their
deadline) rather than take threads from the rest of the process."""

SDK_GRACE = 1.0
"""Seconds the SDKs' own timeouts exceed the deadline: they end the thread, not the send."""

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _executor() -> ThreadPoolExecutor:
    """Made at the first send, in the worker process that sends (not before a fork)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(SEND_THREADS, thread_name_prefix="sms-send")
        return _pool


class Unreachable(Exception):
    """No usable answer: the provider was not reached, or answered what is not its API."""

    def __init__(self, exc: BaseException) -> None:
        super().__init__(scrubbed(f"{type(exc).__name__}: {exc}"))


_QUERY = re.compile(r"\?[^\s'\"()]*")


def scrubbed(text: str) -> str:
    """An SDK's error text without query strings: Aliyun's carry the number and the code
    (``url: /?PhoneNumbers=…&TemplateParam=…``), and neither goes into a log."""
    return _QUERY.sub("?…", text)


async def off_loop(call: Callable[[], T], timeout: float, provider: str) -> T:
    """``call()`` in the SMS pool, given up after ``timeout`` seconds. A call still queued
    then is cancelled and never runs: no message goes out after its problem was answered."""
    future = asyncio.get_running_loop().run_in_executor(_executor(), call)
    try:
        return await asyncio.wait_for(future, timeout)
    except TimeoutError as exc:
        log.warning("%s SMS: no answer within %.1f s", provider, timeout)
        raise SmsProviderError("the SMS provider did not answer in time") from exc
    except Unreachable as exc:
        log.warning("%s SMS unreachable or garbled: %s", provider, exc)
        raise SmsProviderError("the SMS provider is unreachable") from exc


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


def endpoint_parts(endpoint: str) -> tuple[str, str]:
    """``https://host[:port]`` → (``https``, ``host[:port]``): what the SDKs take."""
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
        raise ValueError(f"an SMS endpoint is http(s)://host[:port], not {endpoint!r}")
    return parts.scheme, parts.netloc


class AliyunSender:
    """Alibaba Cloud SMS ``SendSms``: the template gets ``{"code": …}`` (``${code}``)."""

    name = "aliyun"

    def __init__(self, endpoint: str, access_key_id: str, access_key_secret: str,
                 region: str, sign_name: str, template: str, timeout: float) -> None:
        from alibabacloud_dysmsapi20170525.client import Client
        from alibabacloud_dysmsapi20170525.models import SendSmsRequest
        from alibabacloud_tea_openapi.utils_models import Config
        from darabonba.exceptions import ResponseException
        from darabonba.runtime import RuntimeOptions

        scheme, host = endpoint_parts(endpoint)
        millis = round((timeout + SDK_GRACE) * 1000)
        # an endpoint given wins over the region's; no retry_options: one attempt only
        self.client: Any = Client(Config(
            access_key_id=access_key_id, access_key_secret=access_key_secret,
            region_id=region, endpoint=host, protocol=scheme.upper(),
            connect_timeout=millis, read_timeout=millis))
        self.request_type: Any = SendSmsRequest
        self.runtime_type: Any = RuntimeOptions
        self.answer_error: type[Exception] = ResponseException
        self.sign_name = sign_name
        self.template = template
        self.timeout = timeout

    def answer(self, phone: str, code: str) -> str:
        """The answer's ``Code`` (``OK`` when sent), in a pool thread. An error status
        (4xx, 5xx) comes from the SDK as an exception with the provider's code."""
        request = self.request_type(
            phone_numbers=phone, sign_name=self.sign_name, template_code=self.template,
            template_param=json.dumps({"code": code}, separators=(",", ":")))
        try:
            response = self.client.send_sms_with_options(request, self.runtime_type())
        except self.answer_error as exc:
            return str(getattr(exc, "code", "") or f"HTTP {getattr(exc, 'status_code', '?')}")
        except Exception as exc:
            raise Unreachable(exc) from exc
        body = getattr(response, "body", None)
        return str(getattr(body, "code", None) or "no Code in the answer")

    async def send(self, phone: str, code: str, text: str) -> None:
        result = await off_loop(functools.partial(self.answer, phone, code), self.timeout,
                                "Aliyun")
        if result != "OK":
            raise outcome_error(result, ALIYUN_THROTTLED, ALIYUN_BAD_NUMBER, ALIYUN_NO_BALANCE)


class TencentSender:
    """Tencent Cloud SMS ``SendSms`` v2021-01-11: the template gets the code as ``{1}``."""

    name = "tencent"

    def __init__(self, endpoint: str, secret_id: str, secret_key: str, region: str,
                 app_id: str, sign_name: str, template: str, timeout: float) -> None:
        from tencentcloud.common.credential import Credential
        from tencentcloud.common.exception.tencent_cloud_sdk_exception import (
            TencentCloudSDKException,
        )
        from tencentcloud.common.profile.client_profile import ClientProfile
        from tencentcloud.common.profile.http_profile import HttpProfile
        from tencentcloud.sms.v20210111 import models, sms_client

        # its debug lines carry the request body: the number and the code
        logging.getLogger("tencentcloud_sdk_common").setLevel(logging.INFO)
        scheme, host = endpoint_parts(endpoint)
        profile = ClientProfile(
            httpProfile=HttpProfile(protocol=scheme, endpoint=host,
                                    reqTimeout=timeout + SDK_GRACE),
            disable_region_breaker=True)  # the breaker would switch to a built-in endpoint
        self.client: Any = sms_client.SmsClient(Credential(secret_id, secret_key), region,
                                                profile)
        self.request_type: Any = models.SendSmsRequest
        self.sdk_error: type[Exception] = TencentCloudSDKException
        self.app_id = app_id
        self.sign_name = sign_name
        self.template = template
        self.timeout = timeout

    def answer(self, phone: str, code: str) -> str:
        """The number's ``SendStatusSet`` code (``Ok`` when sent), or the answer's
        ``Error.Code``, in a pool thread."""
        request = self.request_type()
        request.PhoneNumberSet = [f"+86{phone}"]
        request.SmsSdkAppId = self.app_id
        request.SignName = self.sign_name
        request.TemplateId = self.template
        request.TemplateParamSet = [code]
        try:
            response = self.client.SendSms(request)
        except self.sdk_error as exc:
            sdk_code = str(getattr(exc, "code", "") or "")
            # an answer of the API carries its RequestId; the SDK's own failures (no
            # answer, a status other than 200, a body that is not the API's) do not
            if sdk_code in TENCENT_UNREACHABLE or not getattr(exc, "requestId", None):
                raise Unreachable(exc) from exc
            return sdk_code
        except Exception as exc:
            raise Unreachable(exc) from exc
        statuses = getattr(response, "SendStatusSet", None) or []
        return str(getattr(statuses[0], "Code", None) or "no Code") if statuses else (
            "no SendStatusSet")

    async def send(self, phone: str, code: str, text: str) -> None:
        result = await off_loop(functools.partial(self.answer, phone, code), self.timeout,
                                "Tencent")
        if result != "Ok":
            raise outcome_error(result, TENCENT_THROTTLED, TENCENT_BAD_NUMBER,
                                TENCENT_NO_BALANCE)
