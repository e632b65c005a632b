"""Local stand-ins of the outside services (Aliyun SMS, Tencent Cloud SMS, WeChat OAuth).

Each is a real HTTP server in a thread that speaks the provider's documented protocol and
checks requests as the provider would. The signature checks are written here from the
providers' documentation, step by step, apart from the SDKs' signing code the service
sends with:

- Aliyun signature V3 (``ACS3-HMAC-SHA256``): canonical request (method, URI, query string
  sorted by name with names and values RFC 3986-encoded, the signed headers — every
  ``x-acs-*`` header, ``host`` and ``content-type`` present — lower-cased with trimmed
  values, their names, and the SHA-256 of the body, which ``x-acs-content-sha256`` must
  carry); ``StringToSign = "ACS3-HMAC-SHA256\\n" + hex(SHA-256(canonical request))``;
  ``Signature = hex(HMAC-SHA256(AccessKeySecret, StringToSign))``; ``x-acs-date`` within
  15 minutes, each ``x-acs-signature-nonce`` once.
- Tencent TC3-HMAC-SHA256: canonical request (method, URI, query, canonical headers,
  signed headers, SHA-256 of the payload), string to sign (algorithm, timestamp,
  credential scope, SHA-256 of the canonical request), signing key HMAC chain
  ``"TC3" + SecretKey`` → date → service → ``tc3_request``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import hmac
import json
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, parse_qsl, quote, urlsplit


@dataclass
class StandIn:
    url: str = ""
    received: list[dict[str, Any]] = field(default_factory=list)
    """Messages accepted (or business-refused) after a valid signature."""
    rejected: list[str] = field(default_factory=list)
    """Error codes answered to requests that failed authentication or validation."""
    answers: dict[str, str] = field(default_factory=dict)
    """Phone number (as the provider sees it) → error code to answer instead of success."""
    arrived: threading.Event = field(default_factory=threading.Event)
    """Set when a request comes in (before any check)."""
    gate: threading.Event | None = None
    """When set to an event: each request waits for it (at most 30 s) before it is answered,
    as a provider that is slow to answer."""

    def hold(self) -> None:
        """In the handler: a request has come in; it waits at the gate if there is one."""
        self.arrived.set()
        if self.gate is not None:
            self.gate.wait(30)


class _Server(ThreadingHTTPServer):

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up (a missed deadline) is no error of the stand-in's."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@contextlib.contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    server = _Server(("127.0.0.1", 0), handler)
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


# --- Alibaba Cloud SMS (dysmsapi 2017-05-25, RPC style, signature V3) -------------------

def rfc3986(text: str) -> str:
    """UTF-8, then every byte but ``A-Z a-z 0-9 - _ . ~`` as ``%XX`` (space ``%20``, ``*``
    ``%2A``, ``~`` kept): the encoding of the canonical URI and query string."""
    return quote(text, safe="-_.~", encoding="utf-8")


def acs3_canonical_request(method: str, path: str, query: list[tuple[str, str]],
                           headers: dict[str, str], signed: list[str],
                           hashed_payload: str) -> str:
    canonical_uri = "/".join(rfc3986(segment) for segment in path.split("/")) or "/"
    canonical_query = "&".join(
        rfc3986(k) + "=" + rfc3986(v) for k, v in sorted(query, key=lambda kv: kv[0]))
    canonical_headers = "".join(h + ":" + headers[h].strip() + "\n" for h in signed)
    return "\n".join([method.upper(), canonical_uri, canonical_query, canonical_headers,
                      ";".join(signed), hashed_payload])


def acs3_expected_signature(secret: str, canonical_request: str) -> str:
    string_to_sign = "ACS3-HMAC-SHA256\n" + hashlib.sha256(
        canonical_request.encode("utf-8")).hexdigest()
    return hmac.new(secret.encode("utf-8"), string_to_sign.encode("utf-8"),
                    hashlib.sha256).hexdigest()


ACS3_HEADERS = ("host", "x-acs-action", "x-acs-version", "x-acs-date",
                "x-acs-signature-nonce", "x-acs-content-sha256")


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

        def _authenticated(self, body: bytes) -> bool:
            """Signature V3, each step as documented; answers the error itself if not."""
            headers = {k.lower(): v for k, v in self.headers.items()}
            algorithm, _, rest = headers.get("authorization", "").partition(" ")
            fields = dict(p.strip().split("=", 1) for p in rest.split(",") if "=" in p)
            if algorithm != "ACS3-HMAC-SHA256" or not {
                    "Credential", "SignedHeaders", "Signature"} <= set(fields):
                self._error(400, "IncompleteSignature", "ACS3-HMAC-SHA256 expected")
                return False
            missing = [h for h in ACS3_HEADERS if not headers.get(h)]
            if missing:
                self._error(400, "MissingParameter", f"missing header {missing[0]}")
                return False
            if (headers["x-acs-action"], headers["x-acs-version"]) != ("SendSms", "2017-05-25"):
                self._error(400, "InvalidAction.NotFound", "no such action")
                return False
            if fields["Credential"] != key_id:
                self._error(404, "InvalidAccessKeyId.NotFound", "unknown key")
                return False
            # every x-acs-* header, host and content-type present must be signed
            signed = fields["SignedHeaders"].split(";")
            must = {h for h in headers if h.startswith("x-acs-")} | {"host"} | (
                {"content-type"} & set(headers))
            if signed != sorted(set(signed)) or not must <= set(signed) or not set(
                    signed) <= set(headers):
                self._error(400, "IncompleteSignature", "signed headers")
                return False
            try:
                stamp = dt.datetime.strptime(headers["x-acs-date"], "%Y-%m-%dT%H:%M:%SZ")
            except ValueError:
                self._error(400, "InvalidTimeStamp.Format", "x-acs-date")
                return False
            if abs(time.time() - stamp.replace(tzinfo=dt.UTC).timestamp()) > 900:
                self._error(400, "InvalidTimeStamp.Expired", "timestamp too far off")
                return False
            hashed_payload = hashlib.sha256(body).hexdigest()
            if not hmac.compare_digest(hashed_payload, headers["x-acs-content-sha256"]):
                self._error(400, "SignatureDoesNotMatch", "payload hash mismatch")
                return False
            parts = urlsplit(self.path)
            canonical = acs3_canonical_request(
                self.command, parts.path or "/", parse_qsl(parts.query, keep_blank_values=True),
                headers, signed, hashed_payload)
            if not hmac.compare_digest(acs3_expected_signature(key_secret, canonical),
                                       fields["Signature"]):
                self._error(400, "SignatureDoesNotMatch", "signature mismatch")
                return False
            with lock:
                if headers["x-acs-signature-nonce"] in nonces:
                    self._error(400, "SignatureNonceUsed", "nonce used")
                    return False
                nonces.add(headers["x-acs-signature-nonce"])
            return True

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            state.hold()
            if not self._authenticated(body):
                return None
            params = dict(parse_qsl(urlsplit(self.path).query, keep_blank_values=True))
            if self.headers.get("Content-Type", "").startswith(
                    "application/x-www-form-urlencoded"):
                params.update(parse_qsl(body.decode(), keep_blank_values=True))
            missing = [k for k in ("PhoneNumbers", "SignName", "TemplateCode")
                       if not params.get(k)]
            if missing:
                return self._error(400, "MissingParameter", f"missing {missing[0]}")
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


TENCENT_CONTENT_TYPE = "application/json"
"""What the API answers with (the SDK reads an ``Error`` only under this or ``text/plain``)."""


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
                                            "RequestId": "standin"}}, TENCENT_CONTENT_TYPE)

        def do_POST(self) -> None:
            payload = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            state.hold()
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
                                            "RequestId": "standin"}}, TENCENT_CONTENT_TYPE)

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
