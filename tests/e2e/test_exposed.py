"""The server process as a client on the open internet meets it, without nginx in front.

Raw sockets against ``voting-service serve`` (one uvicorn process, and gunicorn with two
workers): oversized or endless request heads are refused and the connection closed, a silent
or trickling connection is closed after the head timeout, a client that hangs up mid-body is
one info line in the log, and an IPv6 bind works with several workers.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ADMIN, ADMIN_TOKEN, campaign_payload
from tests.e2e.conftest import SERVERS, Service, running_service, served_by
from voting_service.web.server.protocol import MAX_FIELDS, MAX_HEAD, MAX_LINE

pytestmark = pytest.mark.e2e
HEAD_TIMEOUT = 1.0


@pytest.fixture(scope="module", params=SERVERS)
def exposed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[Service]:
    with served_by(request, tmp_path_factory, "exposed",
                   {"VOTING_HEAD_TIMEOUT": str(HEAD_TIMEOUT)}) as svc:
        yield svc


def _connect(svc: Service) -> socket.socket:
    host, port = svc.url.removeprefix("http://").rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=30)
    return sock


def _read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (a timeout fails)."""
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def _send_all(sock: socket.socket, data: bytes) -> None:
    """Send what the server takes; it may close early (that is what we test)."""
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        sock.sendall(data)


def _head(*lines: str) -> bytes:
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@pytest.mark.parametrize("head", [
    pytest.param(_head("GET /healthz HTTP/1.1", "Host: x", "X-Big: " + "a" * (64 * 1024)),
                 id="one-64k-header"),
    pytest.param(_head("GET /healthz HTTP/1.1", "Host: x",
                       *(f"X-H{i}: {'b' * 4000}" for i in range(4 * MAX_HEAD // 4000))),
                 id="many-4k-headers"),
    pytest.param(_head("GET /healthz HTTP/1.1", "Host: x",
                       *(f"X-N{i}: 1" for i in range(MAX_FIELDS + 1))), id="too-many-headers"),
    pytest.param(_head("GET /healthz HTTP/1.1", "Host: x", "X-Line: " + "c" * 9000),
                 id="one-long-line"),
])
def test_oversized_heads_are_refused_and_closed(exposed: Service, head: bytes) -> None:
    with _connect(exposed) as sock:
        _send_all(sock, head)
        answer = _read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert b"connection: close" in answer.lower()
    assert exposed.client.get("/healthz").status_code == 200  # the server is fine


def test_a_big_head_pipelined_behind_a_request_is_refused(exposed: Service) -> None:
    first = _head("GET /healthz HTTP/1.1", "Host: x")
    second = _head("GET /healthz HTTP/1.1", "Host: x", "X-Big: " + "p" * (MAX_HEAD + 1000))
    with _connect(exposed) as sock:
        _send_all(sock, first + second)
        answer = _read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
    assert b"HTTP/1.1 431 " in answer, answer[-300:]


def test_a_long_request_line_is_refused(exposed: Service) -> None:
    with _connect(exposed) as sock:
        _send_all(sock, _head(f"GET /{'d' * (MAX_LINE + 10)} HTTP/1.1", "Host: x"))
        answer = _read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 414 "), answer[:200]


def test_heads_within_the_bounds_and_big_bodies_still_pass(exposed: Service) -> None:
    headers = {**ADMIN, **{f"X-Extra-{i}": "e" * 200 for i in range(60)}}
    payload = campaign_payload(cid=f"big{int(time.time() * 1000) % 10**9}", candidates=300)
    for cand in payload["candidates"]:
        cand["deeds"] = "事迹" * 400  # a body of about 800 KB after the head
    r = exposed.client.post("/api/v1/admin/campaigns", json=payload, headers=headers)
    assert r.status_code == 201, r.text
    assert len(json.dumps(payload).encode()) > 20 * MAX_HEAD


def test_a_silent_connection_is_closed(exposed: Service) -> None:
    with _connect(exposed) as sock:
        assert _read_until_closed(sock) == b""  # closed by the server, not our timeout


def test_a_trickling_head_is_closed(exposed: Service) -> None:
    head = _head("GET /healthz HTTP/1.1", "Host: x", "X-Slow: " + "s" * 400)
    sent = 0
    with _connect(exposed) as sock:
        sock.settimeout(0.2)
        while sent < len(head):
            try:
                sock.send(head[sent:sent + 1])
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += 1
            try:
                if sock.recv(1024) == b"":
                    break
            except TimeoutError:
                continue
            except ConnectionResetError:
                break
    assert sent < len(head), "the server waited for a head trickling in for minutes"


def _wait_for_log(log: Path, text: str, within: float = 10.0) -> str:
    deadline = time.monotonic() + within
    while True:
        content = log.read_text(errors="replace")
        if text in content or time.monotonic() > deadline:
            return content
        time.sleep(0.1)


def test_a_client_hanging_up_mid_body_is_one_info_line(exposed: Service) -> None:
    before = exposed.log.read_text(errors="replace")
    with _connect(exposed) as sock:
        sock.sendall(_head("POST /api/v1/admin/campaigns HTTP/1.1", "Host: x",
                           f"Authorization: Bearer {ADMIN_TOKEN}",
                           "Content-Type: application/json", "Content-Length: 5000")
                     + b'{"id": "gone", "title": "')
        time.sleep(0.3)  # the app is now waiting for the rest of the body
    log = _wait_for_log(exposed.log, "client disconnected")
    new = log[len(before):]
    assert "INFO" in new and "client disconnected: POST /api/v1/admin/campaigns" in new, new
    assert "Traceback" not in new and "ERROR" not in new and " 500" not in new, new
    assert exposed.client.get("/healthz").status_code == 200


def test_an_ipv6_bind_with_workers(single_url: str, migrated: str, tmp_path: Path) -> None:
    try:
        socket.create_server(("::1", 0), family=socket.AF_INET6).close()
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    with running_service(single_url, migrated, tmp_path / "serve.log",
                         args=("--workers", "2", "--host", "::")) as svc:
        port = svc.url.rsplit(":", 1)[1]
        r = httpx.get(f"http://[::1]:{port}/healthz", timeout=10)
        assert r.status_code == 200


def _responses(sock: socket.socket, count: int) -> list[tuple[bytes, dict[bytes, bytes], bytes]]:
    """``count`` responses read off a kept-alive connection: status line, headers, body."""
    buffer = b""
    out: list[tuple[bytes, dict[bytes, bytes], bytes]] = []
    while len(out) < count:
        head_end = buffer.find(b"\r\n\r\n")
        if head_end >= 0:
            status, *lines = buffer[:head_end].split(b"\r\n")
            headers = {k.lower(): v for k, _, v in (x.partition(b": ") for x in lines)}
            end = head_end + 4 + int(headers[b"content-length"])
            if len(buffer) >= end:
                out.append((status, headers, buffer[head_end + 4:end]))
                buffer = buffer[end:]
                continue
        chunk = sock.recv(65536)
        assert chunk, f"closed after {len(out)} of {count} answers"
        buffer += chunk
    assert buffer == b"", "more than the answers asked for"
    return out


def test_votes_pipelined_on_one_connection_get_whole_answers_in_order(exposed: Service) -> None:
    cid = f"raw{int(time.time() * 1000) % 10**9}"
    payload = campaign_payload(cid)
    per_day = payload["rules"]["votes_per_day"]
    r = exposed.client.post("/api/v1/admin/campaigns", json=payload, headers=ADMIN)
    assert r.status_code == 201, r.text
    for _ in range(200):  # any worker that has loaded the campaign mints the token
        minted = exposed.client.post(f"/api/v1/campaigns/{cid}/voter")
        if minted.status_code == 200:
            break
        time.sleep(0.05)
    token = minted.json()["token"]

    def vote(candidate: str, *extra: str) -> bytes:
        body = json.dumps({"candidate_id": candidate}).encode()
        return _head(f"POST /api/v1/campaigns/{cid}/votes HTTP/1.1", "Host: x",
                     "Content-Type: application/json", f"X-Voter-Token: {token}",
                     f"Content-Length: {len(body)}", *extra) + body

    with _connect(exposed) as sock:
        for _ in range(200):  # the worker behind this connection has loaded the campaign
            _send_all(sock, _head(f"GET /api/v1/campaigns/{cid} HTTP/1.1", "Host: x"))
            if _responses(sock, 1)[0][0] == b"HTTP/1.1 200 OK":
                break
            time.sleep(0.05)
        _send_all(sock, vote("c001") + vote("c002") + vote("c001") + vote("nobody"))
        answers = _responses(sock, 4)
        _send_all(sock, vote("c003", "Connection: close"))
        last = _read_until_closed(sock)
    statuses = [status for status, _, _ in answers]
    assert statuses == [b"HTTP/1.1 200 OK", b"HTTP/1.1 200 OK", b"HTTP/1.1 409 Conflict",
                        b"HTTP/1.1 404 Not Found"]
    bodies = [json.loads(body) for _, _, body in answers]
    assert [b.get("candidate_id") for b in bodies[:2]] == ["c001", "c002"]
    assert [b["votes_left_today"] for b in bodies[:2]] == [per_day - 1, per_day - 2]
    assert [b["code"] for b in bodies[2:]] == ["already_voted", "candidate_not_found"]
    for (_, headers, _), kind in zip(answers, ["json", "json", "problem", "problem"],
                                     strict=True):
        assert headers[b"content-type"] == f"application/{kind}".encode().replace(
            b"problem", b"problem+json")
        assert headers[b"x-frame-options"] == b"DENY"
        assert headers[b"x-content-type-options"] == b"nosniff"
        assert b"default-src" in headers[b"content-security-policy"]
        assert b"date" in headers and b"connection" not in headers
    assert answers[0][1][b"ratelimit"].startswith(f'"daily";r={per_day - 1};t='.encode())
    assert last.startswith(b"HTTP/1.1 200 OK\r\n") and b"\r\nconnection: close\r\n" in last
    assert json.loads(last.partition(b"\r\n\r\n")[2])["votes_left_today"] == per_day - 3

    with _connect(exposed) as sock:  # a cross-site vote is refused, as on every route
        _send_all(sock, vote("c004", "Sec-Fetch-Site: cross-site", "Connection: close"))
        refused = _read_until_closed(sock)
    assert refused.startswith(b"HTTP/1.1 403 "), refused[:200]
