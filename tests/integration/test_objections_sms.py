"""With a real SMS sender configured, an objection's phone number is verified by a code
(issue 24 §2), through the same code store and limits as SMS voters."""

from __future__ import annotations

import pytest

from tests.conftest import Backend, Harness, make_settings
from tests.integration.test_objections import CID, errors, form, published, send
from voting_service.settings import Settings


class Recorder:
    """The SMS gateway's side of the ``http`` sender: what it was asked to send."""

    name = "http"

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    async def send(self, phone: str, code: str, text: str) -> None:
        self.sent.append((phone, code))


@pytest.fixture
def settings(backend: Backend, pg_url: str) -> Settings:
    return make_settings(backend, pg_url, sms_sender="http",
                         sms_http_url="http://127.0.0.1:9/never-called")


@pytest.mark.parametrize("backend", ["single"], indirect=True)
async def test_the_phone_is_verified_by_sms_when_sms_is_configured(harness: Harness) -> None:
    recorder = Recorder()
    harness.app.state.services.sms = recorder
    await published(harness)
    page = await harness.client.get(f"/c/{CID}/results")
    assert 'data-testid="objection-code"' in page.text
    r = await send(harness.client, form())
    assert r.status_code == 422 and errors(r.text) == {"code": "请先获取并填写短信验证码。"}
    r = await send(harness.client, form(action="code"))
    assert r.status_code == 200 and "验证码已发送到" in r.text
    assert [p for p, _ in recorder.sent] == ["13800138000"]
    code = recorder.sent[0][1]
    wrong = "000000" if code != "000000" else "111111"
    r = await send(harness.client, form(code=wrong))
    assert r.status_code == 422 and errors(r.text) == {"code": "验证码错误或已过期。"}
    r = await send(harness.client, form(code=code))
    assert r.status_code == 303, r.text
    verified = await harness.pg.fetchval(
        "SELECT phone_verified FROM objections WHERE campaign_id = $1", CID)
    assert verified is True
