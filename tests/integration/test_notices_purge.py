"""Issue 25 §4: the public pages' footer (organisers, contact, privacy notice, filings) and
the retention purge, after which the published ledger still verifies."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import ADMIN, Backend, Harness, client_for, make_settings
from tests.integration.antifraud_support import CID, NO_LIMITS, clients, drain, new_voter
from tests.integration.test_organisers import run_cli
from voting_service.app import create_app
from voting_service.ledger import public_ledger

ADMIN_API = f"/api/v1/admin/campaigns/{CID}"
CONTACT = "025-83300000（工作日 9:00-17:00）"
NOTICE = {"organisers": ["江苏省总工会", "江苏省人力资源和社会保障厅"], "contact": CONTACT}
ICP, PSB = "苏ICP备12345678号-1", "苏公网安备32010202000001号"


async def test_every_public_page_shows_the_notice(
        harness: Harness, backend: Backend, pg_url: str) -> None:
    settings = make_settings(backend, pg_url, site_icp=ICP, site_psb=PSB,
                             site_contact="privacy@vote.example.cn", retention_days=90)
    app = create_app(settings)
    async with app.router.lifespan_context(app), client_for(app) as client:
        r = await client.post("/api/v1/admin/campaigns", headers=ADMIN, json={
            **_payload(), "notice": NOTICE})
        assert r.status_code == 201, r.text
        r = await client.post(f"{ADMIN_API}/channels", headers=ADMIN, json={
            "id": "xinhua", "name": "新华", "allowed_origins": ["https://news.example.cn"]})
        assert r.status_code == 201, r.text
        pages = {path: (await client.get(path)) for path in (
            "/", f"/c/{CID}", f"/c/{CID}/c001", f"/embed/{CID}?channel=xinhua",
            f"/privacy?c={CID}", "/privacy", "/c/nope")}
        for path, page in pages.items():
            assert page.status_code in (200, 404), path
            html = page.text
            assert 'id="vs-notice"' in html, path
            assert f'<a href="https://beian.miit.gov.cn/" target="_blank" rel="noopener" ' \
                   f'class="icp">{ICP}</a>' in html, path
            assert ("https://beian.mps.gov.cn/#/query/webSearch?code=32010202000001"
                    in html), path
            assert 'href="/privacy' in html, path
        for path in (f"/c/{CID}", f"/c/{CID}/c001", f"/embed/{CID}?channel=xinhua"):
            assert "主办单位：江苏省总工会、江苏省人力资源和社会保障厅" in pages[path].text, path
        assert CONTACT in pages[f"/c/{CID}"].text
        assert "privacy@vote.example.cn" in pages["/"].text
        # the embed's footer opens the notice outside the frame
        assert f'href="/privacy?c={CID}" target="_blank"' in pages[
            f"/embed/{CID}?channel=xinhua"].text
        privacy = pages[f"/privacy?c={CID}"].text
        assert "散列值" in privacy and "网络地址" in privacy and "结果公示 90 天后" in privacy
        assert CONTACT in privacy
        assert "<b>手机号</b>" not in privacy, "this campaign has no SMS sign-in: not listed"
        assert "<b>手机号</b>" in (await client.get("/privacy")).text
        english = (await client.get("/privacy?lang=en")).text
        assert "keyed hash" in english and "90 days after" in english

        # organisers change their notice like any other campaign field
        r = await client.patch(ADMIN_API, headers=ADMIN, json={
            "notice": {"organisers": ["江苏省总工会"], "contact": ""}})
        assert r.status_code == 200, r.text
        assert r.json()["notice"] == {"organisers": ["江苏省总工会"], "contact": ""}
        stored = await harness.pg.fetchval("SELECT notice FROM campaigns WHERE id = $1", CID)
        assert json.loads(stored) == {"organisers": ["江苏省总工会"], "contact": ""}


async def test_without_filings_the_footer_leaves_them_out(harness: Harness) -> None:
    await harness.create_campaign(rules=NO_LIMITS)
    html = (await harness.client.get(f"/c/{CID}")).text
    assert 'id="vs-notice"' in html and "beian" not in html and "主办单位" not in html
    r = await harness.client.post("/api/v1/admin/campaigns", headers=ADMIN, json={
        **_payload("bad"), "notice": {"organisers": ["x" * 201]}})
    assert r.status_code == 400 and r.json()["code"] == "invalid_request"


def _payload(cid: str = CID) -> dict[str, object]:
    from tests.conftest import campaign_payload

    return campaign_payload(cid, rules=NO_LIMITS)


async def _published(h: Harness) -> tuple[bytes, bytes, list[str]]:
    """A campaign with voters on two addresses, a blocked voter and two strike-outs, closed
    and published; returns the ledger file, the results and the voters' ids."""
    await h.create_campaign(rules=NO_LIMITS)
    svc = h.app.state.services
    voters = []
    async with clients(h, ["203.0.113.7", "198.51.100.5"]) as farm:
        for i, client in enumerate(farm * 3):
            token = await new_voter(client)
            voters.append(svc.tokens.credential(token, CID)[0])
            for cand in ("c001", "c002")[: 1 + i % 2]:
                r = await client.post(f"/api/v1/campaigns/{CID}/votes",
                                      json={"candidate_id": cand},
                                      headers={"X-Voter-Token": token})
                assert r.status_code == 200, r.text
    r = await h.client.post("/api/v1/admin/blocklist", headers=ADMIN, json={
        "kind": "voter", "value": voters[0], "reason": "刷票", "campaign_id": CID})
    assert r.status_code == 201, r.text
    r = await h.client.post("/api/v1/admin/blocklist", headers=ADMIN, json={
        "kind": "ip", "value": "198.51.100.0/24", "reason": "机房", "campaign_id": CID})
    assert r.status_code == 201, r.text
    await drain(h)
    for body in ({"reason": "刷票", "voter_ids": [voters[2]]},
                 {"reason": "机房", "ip": "198.51.100.5"}):
        r = await h.client.post(f"{ADMIN_API}/invalidations", headers=ADMIN, json=body)
        assert r.status_code == 201, r.text
    r = await h.client.patch(ADMIN_API, json={"status": "closed"}, headers=ADMIN)
    assert r.status_code == 200
    await drain(h)
    r = await h.client.post(f"{ADMIN_API}/publication", headers=ADMIN, json={})
    assert r.status_code == 201, r.text
    ledger = (await h.client.get(f"/api/v1/campaigns/{CID}/ledger")).content
    results = (await h.client.get(f"/api/v1/campaigns/{CID}/results")).content
    return ledger, results, voters


async def test_purge_pseudonymises_voters_and_drops_addresses_and_the_ledger_verifies(
        harness: Harness, tmp_path: Path) -> None:
    h = harness
    ledger, results, voters = await _published(h)
    votes = await h.pg.fetchval("SELECT count(*) FROM votes WHERE campaign_id = $1", CID)
    assert votes == 9 and await h.pg.fetchval("SELECT count(*) FROM votes WHERE ip IS NULL") == 0
    some_vote = json.loads(ledger.splitlines()[1])["vote_id"]
    looked_up = (await h.client.get(f"/api/v1/campaigns/{CID}/ledger",
                                    params={"vote_id": some_vote})).content

    code, out, err = await run_cli(h, "purge", "--dry-run")
    assert code == 0 and f"(dry run) {CID}: not due until" in out, (out, err)
    code, out, err = await run_cli(h, "purge", "--dry-run", "--days", "0")
    assert code == 0, err
    assert out.strip() == (f"(dry run) {CID}: due; would change voters 6, votes 9, "
                           "addresses 9, blocklist 2, invalidations 2")
    assert await h.pg.fetchval("SELECT count(*) FROM votes WHERE ip IS NULL") == 0, "dry run"
    code, out, err = await run_cli(h, "purge", "--days", "180")
    assert code == 0 and "not due until" in out and "purged" not in out

    code, out, err = await run_cli(h, "purge", "--days", "0")
    assert code == 0, err
    assert out.strip() == (f"{CID}: purged voters 6, votes 9, addresses 9, blocklist 2, "
                           "invalidations 2")
    rows = await h.pg.fetch("SELECT voter_id, ip FROM votes WHERE campaign_id = $1", CID)
    assert all(r["ip"] is None for r in rows)
    published = {json.loads(line)["voter"] for line in ledger.splitlines()
                 if b'"vote_id"' in line}
    assert {r["voter_id"] for r in rows} == {"p:" + p for p in published}
    everything = await _all_text(h)
    for voter in voters:
        assert voter not in everything, "no voter id is left in PostgreSQL"
    for address in ("203.0.113.7", "198.51.100.5", "198.51.100.0/24"):
        assert address not in everything, address
    audit = await h.pg.fetchrow(
        "SELECT actor, request FROM audit_log WHERE action = 'campaign.purge'")
    assert audit["actor"].startswith("cli:") and json.loads(audit["request"])["votes"] == 9

    # the published files are untouched and still recount; a voter still finds their vote
    assert (await h.client.get(f"/api/v1/campaigns/{CID}/ledger")).content == ledger
    assert (await h.client.get(f"/api/v1/campaigns/{CID}/results")).content == results
    assert (await h.client.get(f"/api/v1/campaigns/{CID}/ledger",
                               params={"vote_id": some_vote})).content == looked_up
    (tmp_path / "ledger.ndjson").write_bytes(ledger)
    (tmp_path / "results.json").write_bytes(results)
    code, out, err = await run_cli(h, "verify", str(tmp_path / "ledger.ndjson"),
                                   "--results", str(tmp_path / "results.json"))
    assert code == 0 and out.startswith(f"OK {CID}: 9 votes"), (out, err)
    assert public_ledger.verify(ledger.splitlines(), json.loads(results)).votes == 9

    # a second run finds it done
    code, out, err = await run_cli(h, "purge", "--days", "0")
    assert code == 0 and f"{CID}: purged at " in out
    assert await h.pg.fetchval("SELECT count(*) FROM purges") == 1


async def test_purge_of_an_unpublished_campaign_is_refused(harness: Harness) -> None:
    await harness.create_campaign(rules=NO_LIMITS)
    code, _out, err = await run_cli(harness, "purge", "--campaign", CID, "--dry-run")
    assert code == 1 and "not published" in err and "Traceback" not in err


async def _all_text(h: Harness) -> str:
    tables = [r["tablename"] for r in await h.pg.fetch(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
        " AND tablename NOT IN ('audit_log', 'published_ledger')")]
    return "\n".join([str(await h.pg.fetch(f'SELECT * FROM "{t}"')) for t in tables])
