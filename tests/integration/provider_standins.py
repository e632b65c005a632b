"""Local stand-ins of the outside services (Aliyun SMS, Tencent Cloud SMS, WeChat OAuth).

Each is a real HTTP server in a thread that speaks the provider's documented protocol and
checks requests as the provider would. The signature checks are written here from the
providers' documentation, step by step, apart from the service's own signing code:

- Aliyun RPC signature 1.0: each name and value URL-encoded as ``java.net.URLEncoder`` does
  (UTF-8), then ``+`` → ``%20``, ``*`` → ``%2A``, ``%7E`` → ``~``; pairs sorted by name and
  joined with ``&``; ``StringToSign = method & encode("/") & encode(query)``;
  ``Signature = Base64(HMAC-SHA1(AccessKeySecret + "&", StringToSign))``.
- Tencent TC3-HMAC-SHA256: canonical request (method, URI, query, canonical headers,
  signed headers, SHA-256 of the payload), string to sign (algorithm, timestamp,
  credential scope, SHA-256 of the canonical request), signing key HMAC chain
  ``"TC3" + SecretKey`` → date → service → ``tc3_request``.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, parse_qsl, quote_plus, urlsplit


@dataclass
class StandIn:
    url: str = ""
    received: list[dict[str, Any]] = field(default_factory=list)
    """Messages accepted (or business-refused) after a valid signature."""
    rejected: list[str] = field(default_factory=list)
    """Error codes answered to requests that failed authentication or validation."""
    answers: dict[str, str] = field(default_factory=dict)
    """Phone number (as the provider sees it) → error code to answer instead of success."""


@contextlib.contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _reply(handler: BaseHTTPRequestHandler, status: int, body: dict[str, Any],
           content_type: str = "application/json;charset=utf-8") -> None:
    data = json.dumps(body, ensure_ascii=False).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


# --- Alibaba Cloud SMS (dysmsapi 2017-05-25, RPC style) ---------------------------------

def _java_url_encode(text: str) -> str:
    return quote_plus(text, encoding="utf-8").replace("+", "%20").replace(
        "*", "%2A").replace("%7E", "~")


def aliyun_expected_signature(method: str, params: list[tuple[str, str]], secret: str) -> str:
    pairs = sorted((k, v) for k, v in params if k != "Signature")
    query = "&".join(_java_url_encode(k) + "=" + _java_url_encode(v) for k, v in pairs)
    string_to_sign = method + "&" + _java_url_encode("/") + "&" + _java_url_encode(query)
    mac = hmac.new((secret + "&").encode("utf-8"), string_to_sign.encode("utf-8"), "sha1")
    return base64.b64encode(mac.digest()).decode("ascii")


ALIYUN_REQUIRED = ("AccessKeyId", "Action", "Format", "RegionId", "SignatureMethod",
                   "SignatureNonce", "SignatureVersion", "Timestamp", "Version", "Signature",
                   "PhoneNumbers", "SignName", "TemplateCode")


@contextlib.contextmanager
def aliyun_sms(key_id: str, key_secret: str, sign_name: str,
               template: str) -> Iterator[StandIn]:
    state = StandIn()
    nonces: set[str] = set()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _error(self, status: int, code: str, message: str) -> None:
            state.rejected.append(code)
            _reply(self, status, {"RequestId": "standin", "Code": code, "Message": message,
                                  "HostId": "dysmsapi.aliyuncs.com"})

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode()
            if not self.headers.get("Content-Type", "").startswith(
                    "application/x-www-form-urlencoded"):
                return self._error(400, "InvalidParameter", "form body expected")
            pairs = parse_qsl(raw, keep_blank_values=True) + parse_qsl(
                urlsplit(self.path).query, keep_blank_values=True)
            params = dict(pairs)
            missing = [k for k in ALIYUN_REQUIRED if not params.get(k)]
            if missing:
                return self._error(400, "MissingParameter", f"missing {missing[0]}")
            if params["Action"] != "SendSms" or params["Version"] != "2017-05-25":
                return self._error(400, "InvalidAction.NotFound", "no such action")
            if params["AccessKeyId"] != key_id:
                return self._error(404, "InvalidAccessKeyId.NotFound", "unknown key")
            if (params["SignatureMethod"], params["SignatureVersion"]) != ("HMAC-SHA1", "1.0"):
                return self._error(400, "InvalidSignatureMethod", "HMAC-SHA1 1.0 only")
            stamp = dt.datetime.strptime(params["Timestamp"], "%Y-%m-%dT%H:%M:%SZ").replace(
                tzinfo=dt.UTC)
            if abs(time.time() - stamp.timestamp()) > 900:
                return self._error(400, "InvalidTimeStamp.Expired", "timestamp too far off")
            with lock:
                if params["SignatureNonce"] in nonces:
                    return self._error(400, "SignatureNonceUsed", "nonce used")
                nonces.add(params["SignatureNonce"])
            expected = aliyun_expected_signature("POST", pairs, key_secret)
            if not hmac.compare_digest(expected, params["Signature"]):
                return self._error(400, "SignatureDoesNotMatch", "signature mismatch")
            if params["SignName"] != sign_name:
                return _reply(self, 200, {"RequestId": "standin", "Code":
                                          "isv.SMS_SIGNATURE_ILLEGAL", "Message": "sign"})
            if params["TemplateCode"] != template:
                return _reply(self, 200, {"RequestId": "standin", "Code":
                                          "isv.SMS_TEMPLATE_ILLEGAL", "Message": "template"})
            phone = params["PhoneNumbers"]
            state.received.append({"phone": phone,
                                   "param": json.loads(params.get("TemplateParam") or "{}")})
            code = state.answers.get(phone)
            if code:
                return _reply(self, 200, {"RequestId": "standin", "Code": code,
                                          "Message": "refused"})
            _reply(self, 200, {"RequestId": "standin", "BizId": "900619746936498440^0",
                               "Code": "OK", "Message": "OK"})

    with serving(Handler) as url:
        state.url = url
        yield state


# --- Tencent Cloud SMS (SendSms 2021-01-11, TC3-HMAC-SHA256) ----------------------------

def _hmac256(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()


def tencent_expected_signature(secret_key: str, service: str, timestamp: int,
                               headers: dict[str, str], signed: list[str],
                               payload: bytes) -> str:
    # "header names and values in lower case, leading and trailing spaces removed"
    canonical_headers = "".join(f"{h}:{headers[h].strip().lower()}\n" for h in signed)
    canonical_request = "\n".join([
        "POST", "/", "", canonical_headers, ";".join(signed),
        hashlib.sha256(payload).hexdigest()])
    date = time.strftime("%Y-%m-%d", time.gmtime(timestamp))
    scope = date + "/" + service + "/tc3_request"
    string_to_sign = "TC3-HMAC-SHA256\n" + str(timestamp) + "\n" + scope + "\n" + \
        hashlib.sha256(canonical_request.encode("utf-8")).hexdigest()
    k_date = _hmac256(("TC3" + secret_key).encode("utf-8"), date)
    k_service = _hmac256(k_date, service)
    k_signing = _hmac256(k_service, "tc3_request")
    return hmac.new(k_signing, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


@contextlib.contextmanager
def tencent_sms(secret_id: str, secret_key: str, app_id: str, sign_name: str,
                template: str) -> Iterator[StandIn]:
    state = StandIn()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _error(self, code: str, message: str) -> None:
            state.rejected.append(code)
            _reply(self, 200, {"Response": {"Error": {"Code": code, "Message": message},
                                            "RequestId": "standin"}})

        def do_POST(self) -> None:
            payload = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            auth = self.headers.get("Authorization", "")
            if self.headers.get("X-TC-Action") != "SendSms":
                return self._error("InvalidAction", "action")
            if self.headers.get("X-TC-Version") != "2021-01-11":
                return self._error("InvalidParameterValue", "version")
            if not self.headers.get("X-TC-Region"):
                return self._error("MissingParameter", "region")
            algorithm, _, rest = auth.partition(" ")
            fields = dict(part.strip().split("=", 1) for part in rest.split(",") if "=" in part)
            if algorithm != "TC3-HMAC-SHA256" or not {"Credential", "SignedHeaders",
                                                       "Signature"} <= set(fields):
                return self._error("AuthFailure.InvalidAuthorization", "authorization")
            sid, date, service, term = fields["Credential"].split("/")
            if sid != secret_id:
                return self._error("AuthFailure.SecretIdNotFound", "secret id")
            try:
                stamp = int(self.headers.get("X-TC-Timestamp", ""))
            except ValueError:
                return self._error("AuthFailure.InvalidAuthorization", "timestamp")
            if abs(time.time() - stamp) > 300:
                return self._error("AuthFailure.SignatureExpire", "expired")
            if date != time.strftime("%Y-%m-%d", time.gmtime(stamp)) or (
                    service, term) != ("sms", "tc3_request"):
                return self._error("AuthFailure.InvalidAuthorization", "credential scope")
            signed = fields["SignedHeaders"].split(";")
            if "host" not in signed or "content-type" not in signed:
                return self._error("AuthFailure.InvalidAuthorization", "signed headers")
            headers = {h: self.headers.get(h, "") for h in signed}
            expected = tencent_expected_signature(secret_key, "sms", stamp, headers, signed,
                                                  payload)
            if not hmac.compare_digest(expected, fields["Signature"]):
                return self._error("AuthFailure.SignatureFailure", "signature mismatch")
            body = json.loads(payload)
            if body.get("SmsSdkAppId") != app_id:
                return self._error("FailedOperation.SmsSdkAppIdVerifyFail", "app id")
            if body.get("SignName") != sign_name:
                return self._error("FailedOperation.SignatureIncorrectOrUnapproved", "sign")
            if body.get("TemplateId") != template:
                return self._error("FailedOperation.TemplateIncorrectOrUnapproved", "template")
            statuses = []
            for phone in body.get("PhoneNumberSet", []):
                state.received.append({"phone": phone, "param": body.get("TemplateParamSet")})
                code = state.answers.get(phone)
                if code == "FailedOperation.InsufficientBalanceInSmsPackage":
                    return self._error(code, "balance")
                statuses.append({"SerialNo": "2028:standin", "PhoneNumber": phone,
                                 "Fee": 0 if code else 1, "SessionContext": "",
                                 "Code": code or "Ok",
                                 "Message": "refused" if code else "send success",
                                 "IsoCode": "CN"})
            _reply(self, 200, {"Response": {"SendStatusSet": statuses,
                                            "RequestId": "standin"}})

    with serving(Handler) as url:
        state.url = url
        yield state


# --- WeChat official-account web authorisation (sns/oauth2) -----------------------------

@dataclass
class WechatStandIn(StandIn):
    codes: dict[str, str] = field(default_factory=dict)
    """Issued code → openid; a code works once."""
    used: set[str] = field(default_factory=set)
    busy: bool = False
    limited: bool = False
    snapshot: bool = False
    """Answer as for a page WeChat shows as a snapshot (快照页): a virtual account's openid."""
    authorized: list[dict[str, str]] = field(default_factory=list)
    """Visits of the authorisation page (``/connect/oauth2/authorize``)."""
    next_openid: str = "oStandInBrowserUser0001"

    def issue(self, code: str, openid: str) -> None:
        self.codes[code] = openid


@contextlib.contextmanager
def wechat_oauth(app_id: str, secret: str) -> Iterator[WechatStandIn]:
    """``GET /sns/oauth2/access_token?appid&secret&code&grant_type=authorization_code`` →
    ``{access_token, expires_in, refresh_token, openid, scope}`` or ``{errcode, errmsg}``
    (40013 invalid appid, 40125 invalid secret, 40029 invalid code, 40163 code been used,
    45011 api minute-quota reach limit, -1 system busy). WeChat answers these with status
    200 and ``text/plain``; ``is_snapshotuser: 1`` comes only with a snapshot page's
    virtual account."""
    state = WechatStandIn()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _answer(self, body: dict[str, Any]) -> None:
            if "errcode" in body:
                state.rejected.append(str(body["errcode"]))
            _reply(self, 200, body, "text/plain")

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            q = {k: v[0] for k, v in parse_qs(parts.query).items()}
            if parts.path == "/connect/oauth2/authorize":
                return self._authorize(q)
            state.received.append(q)
            if parts.path != "/sns/oauth2/access_token":
                return self._answer({"errcode": 40066, "errmsg": "invalid url"})
            if state.busy:
                return self._answer({"errcode": -1, "errmsg": "system error"})
            if state.limited:
                return self._answer({"errcode": 45011, "errmsg": "api minute-quota reach limit"})
            if q.get("appid") != app_id:
                return self._answer({"errcode": 40013, "errmsg": "invalid appid"})
            if q.get("secret") != secret:
                return self._answer({"errcode": 40125, "errmsg": "invalid appsecret"})
            if q.get("grant_type") != "authorization_code":
                return self._answer({"errcode": 40002, "errmsg": "invalid grant_type"})
            code = q.get("code", "")
            with lock:
                if code in state.used:
                    return self._answer({"errcode": 40163, "errmsg": "code been used"})
                openid = state.codes.get(code)
                if openid is None:
                    return self._answer({"errcode": 40029, "errmsg": "invalid code"})
                state.used.add(code)
            answer = {"access_token": "ACCESS_TOKEN_STANDIN", "expires_in": 7200,
                      "refresh_token": "REFRESH_TOKEN_STANDIN", "openid": openid,
                      "scope": "snsapi_base"}
            if state.snapshot:  # "returned only for a snapshot page's virtual account"
                answer.update(openid="oVirtualSnapshotUser000", is_snapshotuser=1)
            self._answer(answer)

        def _authorize(self, q: dict[str, str]) -> None:
            """What WeChat's browser does for ``snsapi_base``: no question asked, straight
            back to ``redirect_uri`` with a fresh code (``state`` passed through)."""
            state.authorized.append(q)
            if (q.get("appid") != app_id or q.get("response_type") != "code"
                    or q.get("scope") != "snsapi_base" or not q.get("redirect_uri")):
                self.send_response(400)
                self.end_headers()
                return
            code = f"code{len(state.authorized)}x{int(time.time())}"
            state.issue(code, state.next_openid)
            sep = "&" if "?" in q["redirect_uri"] else "?"
            target = f"{q['redirect_uri']}{sep}code={code}&state={q.get('state', '')}"
            self.send_response(302)
            self.send_header("Location", target)
            self.send_header("Content-Length", "0")
            self.end_headers()

    with serving(Handler) as url:
        state.url = url
        yield state
