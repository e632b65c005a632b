"""Staff accounts and machine tokens over HTTP (issue 25 §3): an admin creates an account
in the console, its person enrols the second factor from the QR page's secret and signs
in; the auditor reads the audit log and nothing else; a password change and an enrolment
reset end sessions; named tokens are created, used and revoked; the audit log is pruned
past its retention and never under 180 days."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from html import unescape

import httpx
import pytest

from tests.conftest import ADMIN, Harness, client_for
from tests.staff_support import PASSWORD, make_account, sign_in
from voting_service.accounts import store, totp

HTML = {"Accept": "text/html"}


@pytest.fixture
async def admin(harness: Harness) -> AsyncIterator[httpx.AsyncClient]:
    secret = await make_account(harness.pg, "root.admin")
    client = client_for(harness.app, "198.51.100.60")
    assert (await sign_in(client, "root.admin", secret)).status_code == 303
    try:
        yield client
    finally:
        await client.aclose()


def shown(page: str, testid: str) -> str:
    found = re.search(rf'data-testid="{testid}">([^<]+)<', page)
    assert found is not None, page[:3000]
    return unescape(found[1])


async def test_an_account_made_in_the_console_enrols_by_qr_and_signs_in(
    harness: Harness, admin: httpx.AsyncClient
) -> None:
    r = await admin.post("/ops/staff/accounts", data={"name": "Liu.Yang", "role": "ops"},
                         headers=HTML)
    assert r.status_code == 200, r.text
    password = shown(r.text, "new-password")
    assert len(password) >= 12
    account = await harness.pg.fetchrow("SELECT * FROM staff_accounts WHERE name = 'liu.yang'")
    assert account["role"] == "ops" and account["password_hash"].startswith("$argon2id$")
    assert password not in account["password_hash"] and account["totp_secret"] is None

    async with client_for(harness.app, "198.51.100.61") as person:
        r = await person.post("/ops/login", data={"name": "liu.yang", "password": password})
        assert r.status_code == 303 and r.headers["location"].startswith("/ops/enrol")
        page = await person.get("/ops/enrol")
        assert page.status_code == 200 and "<svg" in page.text
        assert page.headers["cache-control"] == "no-store"
        secret = shown(page.text, "enrol-secret").replace(" ", "")
        uri = shown(page.text, "enrol-uri")
        assert f"secret={secret}" in uri and uri.startswith("otpauth://totp/")
        # a reload shows the same secret (the app may have scanned the first one)
        assert shown((await person.get("/ops/enrol")).text, "enrol-secret").replace(
            " ", "") == secret
        assert (await person.get("/ops/api/campaigns")).status_code == 401  # not yet
        r = await person.post("/ops/enrol", data={"code": "000000" if totp.code_at(
            secret) != "000000" else "111111"})
        assert r.status_code == 401
        r = await person.post("/ops/enrol", data={"code": totp.code_at(secret)})
        assert r.status_code == 303 and r.headers["location"] == "/ops"
        assert (await person.get("/ops/api/campaigns")).status_code == 200
        assert (await person.get("/ops/staff")).status_code == 403  # ops is no admin
    enrolled = await harness.pg.fetchval(
        "SELECT totp_secret FROM staff_accounts WHERE name = 'liu.yang'")
    assert enrolled == secret
    actions = [(x["actor"], x["action"]) for x in await harness.pg.fetch(
        "SELECT actor, action FROM audit_log WHERE target = 'liu.yang' ORDER BY id")]
    assert actions == [("admin:root.admin@console", "account.create"),
                       ("anonymous@198.51.100.61", "console.sign_in_failed"),
                       ("ops:liu.yang@console", "account.enrolled"),
                       ("ops:liu.yang@console", "console.sign_in")]


async def test_bad_account_forms_are_problems_or_messages(
    harness: Harness, admin: httpx.AsyncClient
) -> None:
    r = await admin.post("/ops/staff/accounts", data={"name": "x", "role": "ops"})
    assert r.status_code == 400 and r.json()["code"] == "invalid_request"
    r = await admin.post("/ops/staff/accounts", data={"name": "ok.name", "role": "root"})
    assert r.status_code == 400 and r.json()["code"] == "invalid_request"
    r = await admin.post("/ops/staff/accounts", data={"name": "root.admin", "role": "ops"})
    assert r.status_code == 409 and r.json()["code"] == "conflict"
    r = await admin.post("/ops/staff/accounts", data={"name": "root.admin", "role": "ops"},
                         headers=HTML)
    assert r.status_code == 409 and 'data-testid="staff-error"' in r.text
    r = await admin.post("/ops/staff/accounts/root.admin/disable")
    assert r.status_code == 403 and r.json()["code"] == "forbidden"  # not oneself
    r = await admin.post("/ops/staff/accounts/nobody.here/disable")
    assert r.status_code == 404 and r.json()["code"] == "not_found"
    # another site cannot make an admin's browser create or disable anything
    r = await admin.post("/ops/staff/accounts", data={"name": "evil.one", "role": "admin"},
                         headers={"Sec-Fetch-Site": "cross-site"})
    assert r.status_code == 403
    assert await harness.pg.fetchval(
        "SELECT count(*) FROM staff_accounts WHERE name = 'evil.one'") == 0


async def test_the_auditor_reads_the_audit_log_and_nothing_else(
    harness: Harness, admin: httpx.AsyncClient
) -> None:
    await harness.create_campaign()
    secret = await make_account(harness.pg, "qian.audit", "auditor")
    async with client_for(harness.app, "198.51.100.62") as auditor:
        r = await sign_in(auditor, "qian.audit", secret)
        assert r.status_code == 303 and r.headers["location"] == "/ops/audit"
        page = await auditor.get("/ops/audit")
        assert page.status_code == 200 and 'data-testid="audit-row"' in page.text
        assert "campaign.create" in page.text and "console.sign_in" in page.text
        assert 'data-testid="nav-staff"' not in page.text
        filtered = await auditor.get("/ops/audit", params={"action": "account."})
        assert "campaign.create" not in filtered.text
        for url in ("/ops", "/ops/c/t2026"):
            r = await auditor.get(url)
            assert r.status_code == 303 and r.headers["location"] == "/ops/audit", url
        for url in ("/ops/api/campaigns", "/ops/api/c/t2026/live",
                    "/ops/api/c/t2026/blocklist", "/ops/c/t2026/export"):
            r = await auditor.get(url)
            assert r.status_code in (401, 403), url
        r = await auditor.post("/ops/api/c/t2026/status", json={"status": "paused"})
        assert r.status_code == 403
        assert (await auditor.get("/ops/staff")).status_code == 403
    # an admin reads it too; the ops role does not
    assert (await admin.get("/ops/audit")).status_code == 200
    ops_secret = await make_account(harness.pg, "he.ops", "ops")
    async with client_for(harness.app, "198.51.100.63") as ops:
        assert (await sign_in(ops, "he.ops", ops_secret)).status_code == 303
        r = await ops.get("/ops/audit")
        assert r.status_code == 403 and r.json()["code"] == "forbidden"


async def test_a_password_change_ends_the_other_sessions(harness: Harness) -> None:
    secret = await make_account(harness.pg, "xu.ops", "ops")
    async with client_for(harness.app, "198.51.100.64") as desk, \
            client_for(harness.app, "198.51.100.65") as phone:
        assert (await sign_in(desk, "xu.ops", secret)).status_code == 303
        assert (await sign_in(phone, "xu.ops", secret)).status_code == 303
        new = "a-much-longer-new-password-2026"
        r = await desk.post("/ops/account/password", data={
            "current_password": "wrong-current-password", "new_password": new,
            "confirm_password": new})
        assert r.status_code == 401
        r = await desk.post("/ops/account/password", data={
            "current_password": PASSWORD, "new_password": "short", "confirm_password": "short"})
        assert r.status_code == 400
        r = await desk.post("/ops/account/password", data={
            "current_password": PASSWORD, "new_password": new, "confirm_password": new})
        assert r.status_code == 200 and 'data-testid="account-message"' in r.text
        assert (await desk.get("/ops/api/campaigns")).status_code == 200  # this one stays
        assert (await phone.get("/ops/api/campaigns")).status_code == 401  # the other ended
    async with client_for(harness.app, "198.51.100.66") as later:
        r = await later.post("/ops/login", data={"name": "xu.ops", "password": PASSWORD})
        assert r.status_code == 401
        r = await sign_in(later, "xu.ops", secret, password=new)
        assert r.status_code == 303


async def test_a_reset_enrolment_ends_sessions_and_enrols_again(
    harness: Harness, admin: httpx.AsyncClient
) -> None:
    secret = await make_account(harness.pg, "lost.phone", "ops")
    async with client_for(harness.app, "198.51.100.67") as person:
        assert (await sign_in(person, "lost.phone", secret)).status_code == 303
        r = await admin.post("/ops/staff/accounts/lost.phone/reset-enrolment", headers=HTML)
        assert r.status_code == 200
        assert (await person.get("/ops/api/campaigns")).status_code == 401
        r = await person.post("/ops/login", data={"name": "lost.phone", "password": PASSWORD})
        assert r.status_code == 303 and r.headers["location"].startswith("/ops/enrol")
        page = (await person.get("/ops/enrol")).text
        assert shown(page, "enrol-secret").replace(" ", "") != secret


async def test_machine_tokens_are_named_hashed_and_revocable(
    harness: Harness, admin: httpx.AsyncClient
) -> None:
    r = await admin.post("/ops/staff/tokens", data={"name": "prometheus", "role": "ops"},
                         headers=HTML)
    assert r.status_code == 200, r.text
    token = shown(r.text, "new-token")
    assert token.startswith("vst_")
    stored = await harness.pg.fetchrow("SELECT * FROM machine_tokens WHERE name = 'prometheus'")
    assert bytes(stored["token_hash"]) == store.digest(token) and token not in str(dict(stored))
    bearer = {"Authorization": f"Bearer {token}"}
    assert (await harness.client.get("/api/v1/admin/campaigns", headers=bearer)).status_code \
        == 200
    r = await harness.client.post("/api/v1/admin/campaigns", json={}, headers=bearer)
    assert r.status_code == 403  # an ops token reads only
    r = await admin.post("/ops/staff/tokens", data={"name": "prometheus", "role": "ops"})
    assert r.status_code == 409 and r.json()["code"] == "conflict"

    r = await admin.post("/ops/staff/tokens/prometheus/revoke", headers=HTML)
    assert r.status_code == 200 and 'data-testid="staff-done"' in r.text
    r = await harness.client.get("/api/v1/admin/campaigns", headers=bearer)
    assert r.status_code == 401 and r.json()["code"] == "unauthorized"
    # the bootstrap tokens of VOTING_ADMIN_TOKENS keep working, named in the audit log
    r = await harness.client.post("/api/v1/admin/campaigns", json={}, headers=ADMIN)
    assert r.status_code == 400
    actions = [(x["actor"], x["action"], x["target"]) for x in await harness.pg.fetch(
        "SELECT actor, action, target FROM audit_log WHERE action LIKE 'token.%' ORDER BY id")]
    assert actions[:2] == [("admin:root.admin@console", "token.create", "prometheus"),
                           ("admin:root.admin@console", "token.revoke", "prometheus")]
    assert [a for _, a, _ in actions[2:]] == ["token.refused"]
    await harness.create_campaign()
    row = await harness.pg.fetchrow(
        "SELECT actor FROM audit_log WHERE action = 'campaign.create'")
    assert row["actor"].startswith("admin:env-")


async def test_the_audit_log_is_pruned_past_its_retention(harness: Harness) -> None:
    # rows younger than the app's own retention (365 days): its background pass, which may
    # run at any moment of this test, deletes none of them, so the counts are this test's
    assert harness.settings.audit_retention_days == 365
    await harness.pg.execute(
        "INSERT INTO audit_log (at, actor, action) VALUES"
        " (now() - interval '300 days', 'x', 'old'), (now() - interval '200 days', 'x', 'kept'),"
        " (now(), 'x', 'new')")
    with pytest.raises(ValueError):
        await store.prune(harness.pg, 179)
    done = await store.prune(harness.pg, 250)
    assert done["audit"] == 1
    left = [r["action"] for r in await harness.pg.fetch("SELECT action FROM audit_log"
                                                         " ORDER BY at")]
    assert left == ["kept", "new"]
    assert (await store.prune(harness.pg, 180))["audit"] == 1
