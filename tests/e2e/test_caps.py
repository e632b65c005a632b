"""What one client may hold open, against ``voting-service serve`` over real sockets (one
uvicorn process and gunicorn with two workers): a request body must arrive within its
deadline, connections are capped per address and per network, and ``/live`` streams per
address and per worker. Meanwhile other clients' votes and pages are answered."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.conftest import SERVERS, Service, served_by
from tests.e2e.test_exposed import _read_until_closed

pytestmark = pytest.mark.e2e
BODY_TIMEOUT = 1.0
CONN_PER_ADDRESS = 12
CONN_PER_NETWORK = 20
SSE_PER_ADDRESS = 3
SSE_PER_WORKER = 5


@pytest.fixture(scope="module", params=SERVERS)
def capped(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Service]:
    env = {
        "VOTING_BODY_TIMEOUT": str(BODY_TIMEOUT),
        "VOTING_BODY_MIN_RATE": "1000",
        "VOTING_CONN_PER_ADDRESS": str(CONN_PER_ADDRESS),
        "VOTING_CONN_PER_NETWORK": str(CONN_PER_NETWORK),
        "VOTING_SSE_PER_ADDRESS": str(SSE_PER_ADDRESS),
        "VOTING_SSE_PER_WORKER": str(SSE_PER_WORKER),
    }
    with served_by(request, tmp_path_factory, "caps", env) as svc:
        svc.workers = 2 if request.param == "gunicorn" else 1  # type: ignore[attr-defined]
        yield svc


def _connect(svc: Service, source: str = "127.0.0.1") -> socket.socket:
    host, port = svc.url.removeprefix("http://").rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=30, source_address=(source, 0))
    return sock


def _alive(sock: socket.socket, past: bytes = b"") -> bool:
    """Whether the server still holds the connection open, silent (it has neither answered
    nor closed); an interim answer ``past`` (a ``100 Continue``) is not an answer."""
    sock.settimeout(0.05)
    try:
        seen = sock.recv(len(past) + 1, socket.MSG_PEEK)
        return bool(past) and seen == past
    except TimeoutError:
        return True
    except OSError:
        return False
    finally:
        sock.settimeout(30)


def _get_from(svc: Service, source: str, path: str) -> httpx.Response:
    """A GET from another loopback address (Linux answers all of 127.0.0.0/8)."""
    with httpx.Client(transport=httpx.HTTPTransport(local_address=source), timeout=10) as c:
        return c.get(svc.url + path)


def _new_campaign(svc: Service) -> str:
    """A campaign every worker knows (each picks changes up within its refresh period)."""
    cid: str = svc.create_campaign()["id"]
    deadline, in_a_row = time.monotonic() + 30, 0
    while in_a_row < 10 and time.monotonic() < deadline:
        with httpx.Client(timeout=10) as fresh:  # a new connection: any worker
            found = fresh.get(f"{svc.url}/api/v1/campaigns/{cid}").status_code == 200
        in_a_row = in_a_row + 1 if found else 0
    assert in_a_row >= 10
    return cid


def _metric(svc: Service, sample: str) -> float:
    """A sample of ``/metrics`` (summed over the workers), 0 when absent."""
    text = httpx.get(svc.url + "/metrics", timeout=10).text
    found = [line.rsplit(" ", 1)[1] for line in text.splitlines() if line.startswith(sample + " ")]
    return float(found[0]) if found else 0.0


def _workers(svc: Service) -> int:
    return int(getattr(svc, "workers", 1))


TRICKLED = {
    "vote": ("/api/v1/campaigns/{cid}/votes", "Content-Length: 2000", b"{", b" "),
    "chunked vote": ("/api/v1/campaigns/{cid}/votes", "Transfer-Encoding: chunked",
                     b"1\r\n{\r\n", b"1\r\n \r\n"),
    "vote by ASGI": ("/api/v1/campaigns/{cid}/votes",  # 100-continue: not the direct route
                     "Content-Length: 2000\r\nExpect: 100-continue", b"{", b" "),
    "voter": ("/api/v1/campaigns/{cid}/voter", "Content-Length: 2000", b"{", b" "),
    "sign-in": ("/ops/login", "Content-Length: 2000", b"{", b" "),
}


@pytest.mark.parametrize("kind", list(TRICKLED))
def test_a_trickled_body_is_cut_off_after_its_deadline(capped: Service, kind: str) -> None:
    """A head promising 2,000 bytes (or a chunked body), then a byte at a time: closed
    with a 408 once the deadline passes, not held while the client trickles (the direct
    vote route, and the ASGI routes: the vote's with ``Expect: 100-continue``)."""
    path, framing, first, more = TRICKLED[kind]
    path = path.format(cid=_new_campaign(capped))
    sock = _connect(capped)
    head = (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"{framing}\r\n\r\n").encode()
    sock.sendall(head + first)
    started = time.monotonic()
    closed = False
    while time.monotonic() - started < BODY_TIMEOUT + 20:
        if not _alive(sock, past=b"HTTP/1.1 100 Continue\r\n\r\n"):
            closed = True
            break
        with contextlib.suppress(OSError):
            sock.sendall(more)
        time.sleep(0.3)
    assert closed, "a trickling body was held open"
    assert _metric(capped, "voting_body_timeouts_total") >= 1
    answer = _read_until_closed(sock).removeprefix(b"HTTP/1.1 100 Continue\r\n\r\n")
    sock.close()
    if answer:  # the 408 may be lost to a reset when the client's bytes were unread
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert b'"code":"body_timeout"' in answer


def test_a_fair_large_upload_is_not_cut_off(capped: Service) -> None:
    """An upload slower than the deadline but above the minimum rate is read whole."""
    sock = _connect(capped)
    body = b"x" * 4000  # 4 s at the 1,000 bytes/s minimum; sent at ~2,000 bytes/s
    sock.sendall(b"POST /api/v1/admin/campaigns HTTP/1.1\r\nHost: x\r\n"
                 b"Authorization: Bearer wrong\r\nContent-Type: application/json\r\n"
                 + f"Content-Length: {len(body)}\r\n\r\n".encode())
    for i in range(0, len(body), 200):
        sock.sendall(body[i:i + 200])
        time.sleep(0.1)
    sock.settimeout(30)
    answer = sock.recv(65536)
    sock.close()
    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]


def test_connections_over_the_address_cap_are_refused_fast(capped: Service) -> None:
    held = [_connect(capped) for _ in range(CONN_PER_ADDRESS * _workers(capped) + 4)]
    try:
        time.sleep(0.3)
        alive = [s for s in held if _alive(s)]
        refused = [s for s in held if s not in alive]
        assert len(alive) <= CONN_PER_ADDRESS * _workers(capped)
        assert len(refused) >= 4
        answer = _read_until_closed(refused[0])
        if answer:
            assert answer.startswith(b"HTTP/1.1 503"), answer[:200]
            assert b"retry-after:" in answer.lower()
            assert b'"code":"too_many_connections"' in answer
        # another address of the same /24 is still served while this one is at its cap
        assert _get_from(capped, "127.0.0.2", "/healthz").status_code == 200
    finally:
        for s in held:
            s.close()
    time.sleep(0.3)
    assert httpx.get(capped.url + "/healthz", timeout=10).status_code == 200
    assert _metric(capped, 'voting_connections_refused_total{level="address"}') >= 4


def test_a_network_is_capped_beyond_its_addresses(capped: Service) -> None:
    cap = CONN_PER_NETWORK * _workers(capped)
    held = [_connect(capped, f"127.0.0.{10 + i % 8}") for i in range(cap + 6)]
    try:
        time.sleep(0.3)
        alive = [s for s in held if _alive(s)]
        assert len(alive) <= cap
        assert len(held) - len(alive) >= 6
        # another network is served meanwhile
        assert _get_from(capped, "127.0.1.1", "/healthz").status_code == 200
    finally:
        for s in held:
            s.close()


def _open_stream(svc: Service, cid: str, source: str) -> tuple[socket.socket, bytes]:
    sock = _connect(svc, source)
    sock.sendall(f"GET /api/v1/campaigns/{cid}/live HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    sock.settimeout(30)
    first = sock.recv(65536)
    return sock, first


def test_live_streams_are_capped_per_address_and_per_worker(capped: Service) -> None:
    cid = _new_campaign(capped)
    streams: list[socket.socket] = []
    try:
        answers = []
        for _ in range(SSE_PER_ADDRESS * _workers(capped) + 2):
            sock, first = _open_stream(capped, cid, "127.0.0.1")
            streams.append(sock)
            answers.append(first)
        ok = [a for a in answers if a.startswith(b"HTTP/1.1 200")]
        refused = [a for a in answers if a.startswith(b"HTTP/1.1 429")]
        assert len(ok) <= SSE_PER_ADDRESS * _workers(capped)
        assert len(refused) >= 2
        assert b'"code":"too_many_streams"' in refused[0]
        assert b"retry-after: 30" in refused[0].lower()
        # other addresses fill the worker's total; beyond it, 503 streams_full
        for i in range(SSE_PER_WORKER * _workers(capped) + 2):
            sock, first = _open_stream(capped, cid, f"127.0.{2 + i}.1")
            streams.append(sock)
            answers.append(first)
        full = [a for a in answers if a.startswith(b"HTTP/1.1 503")]
        assert full and b'"code":"streams_full"' in full[0]
        # votes and pages are still answered meanwhile
        assert capped.cast(cid, "c001").status_code == 200
        assert httpx.get(capped.url + f"/c/{cid}", timeout=10).status_code == 200
    finally:
        for s in streams:
            s.close()
    # closed streams give their slots back
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        sock, first = _open_stream(capped, cid, "127.0.0.1")
        sock.close()
        if first.startswith(b"HTTP/1.1 200"):
            break
        time.sleep(0.2)
    assert first.startswith(b"HTTP/1.1 200"), first[:200]
