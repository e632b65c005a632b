"""Aliyun and Tencent Cloud SMS senders (the providers' SDKs) over real HTTP against their
local stand-ins (which check the signatures), their errors and deadline as problems, and
the SMS budget against SMS pumping."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import secrets
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
import pytest

from tests.conftest import ADMIN, OPS, Backend, Harness, campaign_payload, client_for
from tests.integration.antifraud_support import (
    CID,
    NO_LIMITS,
    clients,
    problem_code,
    relaxed_settings,
    vote,
)
from tests.integration.provider_standins import (
    StandIn,
    acs3_canonical_request,
    acs3_expected_signature,
    aliyun_sms,
    tencent_sms,
)
from tests.staff_support import signed_in
from voting_service.app import create_app
from voting_service.fraud import sms_budget
from voting_service.settings import ConfigurationError, Secret, Settings
from voting_service.vote import identity

START, VERIFY = "/api/v1/auth/sms/start", "/api/v1/auth/sms/verify"
SMS_ONLY = {**NO_LIMITS, "identity": ["sms"]}
ALI_KEY, ALI_SECRET = "LTAI5tStandInKey", "standin-aliyun-secret-0123456789"
TC_ID, TC_KEY = "AKIDstandin0123456789", "standin-tencent-key-0123456789"
SIGN, ALI_TEMPLATE, TC_TEMPLATE, TC_APP = "江苏总工会", "SMS_154950909", "1234567", "1400006666"


@pytest.fixture
def aliyun() -> Iterator[StandIn]:
    with aliyun_sms(ALI_KEY, ALI_SECRET, SIGN, ALI_TEMPLATE) as state:
        yield state


@pytest.fixture
def tencent() -> Iterator[StandIn]:
    with tencent_sms(TC_ID, TC_KEY, TC_APP, SIGN, TC_TEMPLATE) as state:
        yield state


def aliyun_settings(backend: Backend, pg_url: str, url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "sms_sender": "aliyun", "aliyun_sms_endpoint": url, "aliyun_access_key_id": ALI_KEY,
        "aliyun_access_key_secret": Secret(ALI_SECRET), "sms_sign_name": SIGN,
        "sms_template_id": ALI_TEMPLATE, **overrides}
    return relaxed_settings(backend, pg_url, **values)


def tencent_settings(backend: Backend, pg_url: str, url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "sms_sender": "tencent", "tencent_sms_endpoint": url, "tencent_secret_id": TC_ID,
        "tencent_secret_key": Secret(TC_KEY), "tencent_sms_app_id": TC_APP,
        "sms_sign_name": SIGN, "sms_template_id": TC_TEMPLATE, **overrides}
    return relaxed_settings(backend, pg_url, **values)


async def start(client: httpx.AsyncClient, phone: str) -> httpx.Response:
    return await client.post(START, json={"phone": phone, "campaign_id": CID})


async def running(h: Harness, settings: Settings) -> AsyncIterator[Harness]:
    app = create_app(settings)
    async with app.router.lifespan_context(app), client_for(app) as client:
        yielded = Harness(app, client, settings, h.redis, h.pg)
        r = await client.post("/api/v1/admin/campaigns",
                              json=campaign_payload(rules=SMS_ONLY), headers=ADMIN)
        assert r.status_code in (201, 409), r.text  # 409: made by an earlier app of the test
        yield yielded


@pytest.fixture
async def ali(harness: Harness, backend: Backend, pg_url: str,
              aliyun: StandIn) -> AsyncIterator[tuple[Harness, StandIn]]:
    async for h in running(harness, aliyun_settings(backend, pg_url, aliyun.url)):
        yield h, aliyun


@pytest.fixture
async def tc(harness: Harness, backend: Backend, pg_url: str,
             tencent: StandIn) -> AsyncIterator[tuple[Harness, StandIn]]:
    async for h in running(harness, tencent_settings(backend, pg_url, tencent.url)):
        yield h, tencent


async def test_aliyun_sends_a_signed_code_that_signs_the_voter_in(
        ali: tuple[Harness, StandIn]) -> None:
    h, standin = ali
    r = await start(h.client, "+86 139-1234-5678")
    assert r.status_code == 202, r.text
    assert standin.rejected == []
    [sent] = standin.received
    assert sent["phone"] == "13912345678"
    code = sent["param"]["code"]
    assert len(code) == 6 and code.isdigit()
    r = await h.client.post(VERIFY, json={"phone": "13912345678", "code": code,
                                          "campaign_id": CID})
    assert r.status_code == 200, r.text
    r = await vote(h.client, r.json()["token"], "c001")
    assert r.status_code == 200, r.text


async def test_tencent_sends_a_signed_code_that_signs_the_voter_in(
        tc: tuple[Harness, StandIn]) -> None:
    h, standin = tc
    r = await start(h.client, "13912345678")
    assert r.status_code == 202, r.text
    assert standin.rejected == []
    [sent] = standin.received
    assert sent["phone"] == "+8613912345678"
    [code] = sent["param"]
    r = await h.client.post(VERIFY, json={"phone": "13912345678", "code": code,
                                          "campaign_id": CID})
    assert r.status_code == 200, r.text
    voter = identity.voter_id(str(h.settings.pepper), "sms", "13912345678")
    assert h.app.state.services.tokens.credential(r.json()["token"], CID) == (voter, "sms")


async def test_aliyun_errors_are_clear_problems(ali: tuple[Harness, StandIn]) -> None:
    await provider_errors("aliyun", *ali)


async def test_tencent_errors_are_clear_problems(tc: tuple[Harness, StandIn]) -> None:
    await provider_errors("tencent", *tc)


async def provider_errors(provider: str, h: Harness, standin: StandIn) -> None:
    plus = "+86" if provider == "tencent" else ""
    cases = {
        "aliyun": [("13900000001", "isv.BUSINESS_LIMIT_CONTROL", 429, "sms_throttled"),
                   ("13900000002", "isv.MOBILE_NUMBER_ILLEGAL", 400, "sms_number_invalid"),
                   ("13900000003", "isv.AMOUNT_NOT_ENOUGH", 503, "sms_out_of_balance")],
        "tencent": [("13900000001", "LimitExceeded.PhoneNumberDailyLimit", 429,
                     "sms_throttled"),
                    ("13900000002", "InvalidParameterValue.IncorrectPhoneNumber", 400,
                     "sms_number_invalid"),
                    ("13900000003", "FailedOperation.InsufficientBalanceInSmsPackage", 503,
                     "sms_out_of_balance")],
    }[provider]
    for phone, provider_code, status, code in cases:
        standin.answers[plus + phone] = provider_code
        r = await start(h.client, phone)
        assert (r.status_code, problem_code(r)) == (status, code), r.text
        assert r.json()["provider_code"] == provider_code
    # a refused send leaves no code behind to check
    r = await h.client.post(VERIFY, json={"phone": "13900000001", "code": "123456",
                                          "campaign_id": CID})
    assert problem_code(r) == "invalid_code" and r.json()["tries_left"] == 0


async def test_a_wrong_secret_fails_the_providers_signature_check(
        harness: Harness, backend: Backend, pg_url: str, aliyun: StandIn,
        tencent: StandIn) -> None:
    for n, (settings, standin, expected) in enumerate((
        (aliyun_settings(backend, pg_url, aliyun.url,
                         aliyun_access_key_secret=Secret("not-the-secret")),
         aliyun, "SignatureDoesNotMatch"),
        (tencent_settings(backend, pg_url, tencent.url,
                          tencent_secret_key=Secret("not-the-key")),
         tencent, "AuthFailure.SignatureFailure"),
    )):
        async for h in running(harness, settings):
            r = await start(h.client, f"1391234000{n}")
            assert (r.status_code, problem_code(r)) == (503, "sms_provider_error"), r.text
        assert standin.rejected == [expected]
        assert standin.received == []


@pytest.mark.parametrize("provider", ["aliyun", "tencent"])
async def test_a_slow_provider_holds_neither_the_loop_nor_the_voter(
        provider: str, harness: Harness, backend: Backend, pg_url: str, aliyun: StandIn,
        tencent: StandIn) -> None:
    standin, make = ((aliyun, aliyun_settings) if provider == "aliyun"
                     else (tencent, tencent_settings))
    standin.gate = threading.Event()
    try:
        async for h in running(harness, make(backend, pg_url, standin.url,
                                              sms_http_timeout=30.0)):
            sending = asyncio.create_task(start(h.client, "13912340001"))
            assert await asyncio.to_thread(standin.arrived.wait, 30)
            r = await h.client.get("/healthz")
            assert r.status_code == 200
            assert not sending.done(), "the loop answered while the provider had not"
            standin.gate.set()
            r = await sending
            assert r.status_code == 202, r.text
        standin.gate.clear()
        async for h in running(harness, make(backend, pg_url, standin.url,
                                              sms_http_timeout=0.5)):
            r = await start(h.client, "13912340002")
            assert (r.status_code, problem_code(r)) == (503, "sms_provider_error"), r.text
            assert r.json()["detail"] == "the SMS provider did not answer in time"
            r = await h.client.post(VERIFY, json={"phone": "13912340002", "code": "123456",
                                                  "campaign_id": CID})
            assert problem_code(r) == "invalid_code" and r.json()["tries_left"] == 0
    finally:
        standin.gate.set()


async def test_an_unreachable_provider_is_a_provider_error(
        harness: Harness, backend: Backend, pg_url: str,
        caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    for n, settings in enumerate((aliyun_settings(backend, pg_url, closed),
                                  tencent_settings(backend, pg_url, closed))):
        async for h in running(harness, settings):
            r = await start(h.client, f"1391235000{n}")
            assert (r.status_code, problem_code(r)) == (503, "sms_provider_error"), r.text
            assert r.json()["detail"] == "the SMS provider is unreachable"
            assert "provider_code" not in r.json()
    logged = [rec.getMessage() for rec in caplog.records if "unreachable" in rec.getMessage()]
    assert len(logged) == 2 and "Connection" in logged[0], logged
    assert "url: /?…" in logged[0], "the query string (number and code) is cut"
    assert not [m for m in logged if "1391235000" in m or "TemplateParam" in m], logged


def _acs3(url: str, params: dict[str, str], secret: str = ALI_SECRET, body: bytes = b"",
          nonce: str = "", date: str = "", unsigned: tuple[str, ...] = (),
          after: dict[str, str] | None = None) -> httpx.Response:
    """A SendSms request signed V3 by the stand-in's own rules, then changed as asked:
    ``unsigned`` headers left out of the signature, ``after`` parameters changed once
    signed."""
    headers = {
        "host": urlsplit(url).netloc, "x-acs-action": "SendSms", "x-acs-version": "2017-05-25",
        "x-acs-date": date or dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "x-acs-signature-nonce": nonce or secrets.token_hex(16),
        "x-acs-content-sha256": hashlib.sha256(b"").hexdigest(),
    }
    signed = sorted(h for h in headers if h not in unsigned)
    canonical = acs3_canonical_request("POST", "/", list(params.items()), headers, signed,
                                       headers["x-acs-content-sha256"])
    headers["Authorization"] = (
        f"ACS3-HMAC-SHA256 Credential={ALI_KEY},SignedHeaders={';'.join(signed)},"
        f"Signature={acs3_expected_signature(secret, canonical)}")
    sent = {**params, **(after or {})}
    return httpx.post(f"{url}/?{urlencode(sent)}", headers=headers, content=body)


def test_the_aliyun_stand_in_refuses_what_the_provider_refuses(aliyun: StandIn) -> None:
    params = {"PhoneNumbers": "13912345678", "SignName": SIGN, "TemplateCode": ALI_TEMPLATE,
              "TemplateParam": '{"code":"123456"}'}
    r = _acs3(aliyun.url, params, nonce="n-1")
    assert (r.status_code, r.json()["Code"]) == (200, "OK"), "signed right: sent"
    cases = [
        (_acs3(aliyun.url, params, nonce="n-1"), "SignatureNonceUsed"),
        (_acs3(aliyun.url, params, secret="not-the-secret"), "SignatureDoesNotMatch"),
        (_acs3(aliyun.url, params, after={"PhoneNumbers": "13900000000"}),
         "SignatureDoesNotMatch"),
        (_acs3(aliyun.url, params, body=b"PhoneNumbers=13900000000"), "SignatureDoesNotMatch"),
        (_acs3(aliyun.url, params, unsigned=("x-acs-signature-nonce",)), "IncompleteSignature"),
        (_acs3(aliyun.url, params, unsigned=("host",)), "IncompleteSignature"),
        (_acs3(aliyun.url, params, date="2023-10-26T10:22:32Z"), "InvalidTimeStamp.Expired"),
        # the legacy RPC signature (1.0) is not what the SDK sends
        (httpx.post(aliyun.url + "/", data={**params, "Signature": "x"}), "IncompleteSignature"),
    ]
    for r, code in cases:
        assert (r.status_code, r.json()["Code"]) == (400, code), r.text
    assert aliyun.rejected == [code for _, code in cases]
    assert [m["phone"] for m in aliyun.received] == ["13912345678"]


async def test_daily_budget_alarms_at_80_percent_and_refuses_at_100(
        harness: Harness, backend: Backend, pg_url: str, aliyun: StandIn) -> None:
    alarms_before = _sample("voting_sms_budget_alarms_total", {"period": "day"})
    settings = aliyun_settings(backend, pg_url, aliyun.url, sms_daily_budget=5,
                               sms_hourly_budget=0, sms_prefix_daily_cap=0, sms_price=0.05)
    async for h in running(harness, settings):
        phones = [f"1370000{i:04d}" for i in range(8)]
        async with clients(h, [f"198.51.100.{i + 1}" for i in range(8)]) as farm:
            codes = []
            for client, phone in zip(farm, phones, strict=True):
                r = await start(client, phone)
                codes.append((r.status_code, r.json().get("code")))
        assert codes == [(202, None)] * 5 + [(429, "sms_budget_exhausted")] * 3
        assert len(aliyun.received) == 5, "refused before the provider is asked"
        r = await start(h.client, "13800000000")
        assert r.json()["budget"] == "day"
        assert int(r.headers["retry-after"]) <= 86400
        assert _sample("voting_sms_budget_alarms_total", {"period": "day"}) == (
            alarms_before + 1), "one alarm at 4 of 5, not again at 5"
        used = await sms_budget.usage(h.redis, sms_budget.Budget(5, 0, 0, 0.05), _now())
        assert (used.sent_today, used.outcomes["sent"], used.spend) == (5, 5, 0.25)
        assert used.outcomes["refused_day"] == 4
        assert used.alarms == ["day"]
        r = await h.client.get("/metrics", headers=OPS)
        assert r.status_code == 200
        assert 'voting_sms_sends_total{outcome="sent",sender="aliyun"}' in r.text
        assert "voting_sms_spend_yuan_total" in r.text
        # and in the console, for anyone on duty
        r = await h.client.get("/ops/sms")
        assert 'name="password"' in r.text and "sms-spend" not in r.text, "sign-in first"
        console = await signed_in(h, "zhao.ops", "ops", "198.51.100.200")
        try:
            r = await console.get("/ops/sms")
        finally:
            await console.aclose()
        assert r.status_code == 200
        html = r.text
        assert 'data-testid="sms-sender">aliyun<' in html
        assert '<tr data-period="day" data-state="full">' in html
        assert '<td class="n" data-f="sent">5</td>' in html
        assert 'data-testid="sms-spend">0.25<' in html
        assert ('<tr data-outcome="refused_day"><td><code>refused_day</code></td>'
                '<td class="n">4') in html


async def test_hourly_budget_and_prefix_cap(
        harness: Harness, backend: Backend, pg_url: str, aliyun: StandIn) -> None:
    settings = aliyun_settings(backend, pg_url, aliyun.url, sms_daily_budget=0,
                               sms_hourly_budget=4, sms_prefix_daily_cap=2)
    async for h in running(harness, settings):
        async with clients(h, [f"198.51.100.{i + 1}" for i in range(6)]) as farm:
            same_prefix = [await start(farm[i], f"1361234{i:04d}") for i in range(3)]
            assert [r.status_code for r in same_prefix] == [202, 202, 429]
            assert problem_code(same_prefix[2]) == "sms_prefix_limited"
            other = [await start(farm[3 + i], f"13{5 + i}99990000") for i in range(3)]
        assert [r.status_code for r in other] == [202, 202, 429]
        assert (problem_code(other[2]), other[2].json()["budget"]) == (
            "sms_budget_exhausted", "hour")
        assert int(other[2].headers["retry-after"]) <= 3601


async def test_the_budget_holds_under_concurrent_requests(
        harness: Harness, backend: Backend, pg_url: str, tencent: StandIn) -> None:
    settings = tencent_settings(backend, pg_url, tencent.url, sms_daily_budget=10,
                                sms_hourly_budget=0, sms_prefix_daily_cap=0)
    async for h in running(harness, settings):
        async with clients(h, [f"198.51.{i // 100}.{i % 100 + 1}" for i in range(60)]) as farm:
            answers = await asyncio.gather(*(start(c, f"1590000{i:04d}")
                                             for i, c in enumerate(farm)))
        assert [r.status_code for r in answers].count(202) == 10
        assert {problem_code(r) for r in answers if r.status_code != 202} == {
            "sms_budget_exhausted"}
        assert len(tencent.received) == 10


def test_provider_settings_are_checked() -> None:
    base = {"VOTING_SECRET_KEY": "k" * 20, "VOTING_PEPPER": "p" * 20}
    with pytest.raises(ConfigurationError, match="VOTING_ALIYUN_ACCESS_KEY_ID"):
        Settings.from_env({**base, "VOTING_SMS_SENDER": "aliyun"})
    with pytest.raises(ConfigurationError, match="must be one of"):
        Settings.from_env({**base, "VOTING_SMS_SENDER": "carrier-pigeon"})
    with pytest.raises(ConfigurationError, match="VOTING_ALIYUN_SMS_ENDPOINT must be"):
        Settings.from_env({**base, "VOTING_ALIYUN_SMS_ENDPOINT": "https://dysmsapi.aliyuncs.com/v1"})
    s = Settings.from_env({**base, "VOTING_SMS_SENDER": "tencent",
                           "VOTING_TENCENT_SECRET_ID": "id", "VOTING_TENCENT_SECRET_KEY": "key",
                           "VOTING_TENCENT_SMS_APP_ID": "1400", "VOTING_SMS_SIGN_NAME": "s",
                           "VOTING_SMS_TEMPLATE_ID": "1", "VOTING_SMS_DAILY_BUDGET": "50"})
    assert (s.sms_sender, s.sms_daily_budget, s.sms_hourly_budget) == ("tencent", 50, 3000)
    assert "key" not in repr(s.tencent_secret_key)


def _now() -> float:
    import time

    return time.time()


def _sample(name: str, labels: dict[str, str]) -> float:
    return sms_budget.REGISTRY.get_sample_value(name, labels) or 0.0
