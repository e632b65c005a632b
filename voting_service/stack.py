"""One local stack as real processes: Valkey (single node or Cluster), PostgreSQL, the web
app ×N and the flusher ×M, each child in a session of its own and always stopped.

The fault tests, the browser tests and the load tests (``loadtests/``) all start the same
processes the same way; this module is that one way. It lives in the package, beside
:mod:`voting_service.embedded` whose servers it runs, because both ``tests`` and
``loadtests`` import the package while neither may import the other (``loadtests`` is not
installed, ``tests`` is not shipped): imports point one way, into ``voting_service``, and
nothing here imports a test. It uses only the standard library and the embedded servers.

:func:`service_env` is the one place the ``VOTING_*`` environment of a child is written:
what the caller's environment says about servers and settings is dropped first, so a child
runs on this stack's servers only. (``voting-service up`` keeps its own loop: it shows its
children's output on the terminal and keeps its data across runs, see
:mod:`voting_service.local_stack`.)
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from . import embedded

if TYPE_CHECKING:
    from .settings import Settings

OWN_PREFIXES = ("VOTING_", "REDIS_", "DATABASE_")
"""Variables that choose servers or settings: a child takes them from the stack only."""
CLI = (sys.executable, "-m", "voting_service.cli")


def clean_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (the process environment by default) without servers or settings."""
    source = os.environ if base is None else base
    return {k: v for k, v in source.items() if not k.startswith(OWN_PREFIXES)}


def service_env(
    *, redis_url: str | None = None, database_url: str | None = None, cluster: bool = False,
    secret_key: str | None = None, pepper: str | None = None, shards: int | None = None,
    admin_tokens: str = "", base: Mapping[str, str] | None = None,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment of a ``voting-service`` process: ``clean_env(base)`` plus what is
    given (``extra`` last, by variable name: ``{"VOTING_WRITE_TIMEOUT": "5"}``)."""
    env = clean_env(base)
    named = {"REDIS_URL": redis_url, "DATABASE_URL": database_url,
             "VOTING_REDIS_CLUSTER": "1" if cluster else None,
             "VOTING_SECRET_KEY": secret_key, "VOTING_PEPPER": pepper,
             "VOTING_SHARDS": None if shards is None else str(shards),
             "VOTING_ADMIN_TOKENS": admin_tokens or None}
    env.update({k: v for k, v in named.items() if v is not None})
    env.update(extra or {})
    return env


def settings_env(settings: Settings, base: Mapping[str, str] | None = None,
                 extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment under which a CLI process sees the servers and secrets of
    ``settings`` (a test's in-process app and a command run beside it)."""
    return service_env(
        redis_url=settings.redis_url, database_url=settings.database_url,
        cluster=settings.redis_cluster, secret_key=str(settings.secret_key),
        pepper=str(settings.pepper), shards=settings.shards,
        admin_tokens=",".join(f"{role}:{token}" for token, role in
                              settings.admin_tokens.items()),
        base=base, extra=extra)


def _proc_stats() -> Iterator[tuple[int, list[str]]]:
    """(pid, the fields after ``comm``) of every process in /proc (comm may hold spaces)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError):
                stat = (entry / "stat").read_text()
                yield int(entry.name), stat[stat.rindex(")") + 2:].split()


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (children in sessions of their own included)."""
    tree: dict[int, list[int]] = {}
    for child, fields in _proc_stats():
        tree.setdefault(int(fields[1]), []).append(child)
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def running(pid: int) -> bool:
    """The process exists and is not a zombie (an exited child not yet reaped)."""
    if not embedded.pid_alive(pid):
        return False
    with contextlib.suppress(OSError, IndexError):
        stat = (Path("/proc") / str(pid) / "stat").read_text()
        return stat[stat.rindex(")") + 2:].split()[0] != "Z"
    return True


class Child:
    """One child process group with its output in a log file."""

    def __init__(self, name: str, argv: Sequence[str], env: Mapping[str, str], log: Path,
                 *, cwd: Path | None = None, port: int | None = None) -> None:
        self.name = name
        self.log = log
        self.port = port
        """The port it serves on (a web app), if any."""
        with open(log, "ab") as out:
            self.popen = subprocess.Popen(
                list(argv), env=dict(env), cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, chars: int = 3000) -> str:
        with contextlib.suppress(OSError):
            return self.log.read_text(errors="replace")[-chars:]
        return ""

    def kill(self) -> None:
        """SIGKILL the leader, as a crash would (its group stays for :meth:`stop`)."""
        self.popen.send_signal(signal.SIGKILL)
        self.popen.wait()

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM to the whole group, then SIGKILL whatever is left after ``grace`` s."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(grace)
        # the leader may be gone while its workers linger: the group id outlives it
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(5)

    def group_pids(self) -> list[int]:
        """PIDs of the process group (the gunicorn master and its workers)."""
        return sorted(pid for pid, fields in _proc_stats() if int(fields[2]) == self.pid)


class Children:
    """Starts children and stops every one of them on exit, newest first."""

    def __init__(self, logdir: Path, *, cwd: Path | None = None) -> None:
        self.logdir = logdir
        self.cwd = cwd
        self._children: list[Child] = []

    def start(self, name: str, argv: Sequence[str], env: Mapping[str, str], *,
              log: Path | None = None, port: int | None = None) -> Child:
        child = Child(name, argv, env, log or self.logdir / f"{name}.log", cwd=self.cwd,
                      port=port)
        self._children.append(child)
        return child

    def stop(self, child: Child) -> None:
        child.stop()
        with contextlib.suppress(ValueError):
            self._children.remove(child)

    def stop_all(self) -> None:
        while self._children:
            self._children.pop().stop()

    def __enter__(self) -> Children:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop_all()


def _get(path: str) -> bytes:
    return (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "Connection: close\r\n\r\n").encode()


async def http_status(port: int, path: str, timeout: float = 1.0) -> int:
    """Status of ``GET path`` on 127.0.0.1:port, or 0 if nothing answered."""
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                writer.write(_get(path))
                line = await reader.readline()
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
        return int(line.split()[1])
    except (OSError, TimeoutError, IndexError, ValueError):
        return 0


def _starting(child: Child) -> bool:
    """True while ``child`` runs; once it has exited, an error with its log's tail."""
    if not child.alive():
        raise RuntimeError(f"{child.name} exited at start:\n{child.tail()}")
    return True


async def wait_ready(child: Child, port: int, path: str = "/readyz",
                     timeout: float = 60.0) -> None:
    """Until ``GET path`` answers 200; fail early if the child died."""
    deadline = time.monotonic() + timeout
    while _starting(child) and await http_status(port, path) != 200:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{child.name} not ready on port {port} after {timeout:.0f}s:"
                               f"\n{child.tail()}")
        await asyncio.sleep(0.1)


def wait_ready_blocking(child: Child, port: int, path: str = "/readyz",
                        timeout: float = 60.0) -> None:
    """:func:`wait_ready` for code that may not run an event loop of its own (a sync
    fixture inside an async test): the wait runs on a thread with a loop of its own."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, wait_ready(child, port, path, timeout)).result()


class Stack:
    """Servers (started here unless their URLs are given), their environment, and the
    ``voting-service`` processes on them; :meth:`stop` (or leaving the ``with``) stops the
    processes newest first, then the servers this stack started.

    ``extra`` are more variables for every child (``{"VOTING_REDIS_REPLICA_ACKS": "1"}``).
    """

    def __init__(
        self, workdir: Path, *, cluster: bool = False, replicas: int = 0,
        node_timeout_ms: int = 5000, redis_url: str | None = None,
        database_url: str | None = None, secret_key: str | None = None,
        pepper: str | None = None, shards: int = 16, admin_tokens: str = "",
        base_env: Mapping[str, str] | None = None, logdir: Path | None = None,
        cwd: Path | None = None, extra: Mapping[str, str] | None = None,
    ) -> None:
        self.dir = workdir
        self.children = Children(logdir or workdir, cwd=cwd)
        self.valkey: embedded.ValkeyServer | None = None
        self.cluster: embedded.ValkeyCluster | None = None
        self.pg: embedded.PostgresServer | None = None
        self.webs: list[Child] = []
        self.flushers: list[Child] = []
        self._cluster = (cluster, replicas, node_timeout_ms)
        self.secret_key = secret_key or secrets.token_urlsafe(32)
        self.pepper = pepper or secrets.token_urlsafe(32)
        self.shards = shards
        self.admin_tokens = admin_tokens
        self.base_env = base_env
        self.extra = dict(extra or {})
        self.redis_url = redis_url or ""
        self.database_url = database_url or ""

    def start(self) -> Stack:
        """Start the servers whose URLs were not given."""
        clustered, replicas, node_timeout_ms = self._cluster
        if not self.redis_url and clustered:
            self.cluster = embedded.ValkeyCluster(self.dir / "cluster", replicas=replicas,
                                                  node_timeout_ms=node_timeout_ms).start()
            self.redis_url = self.cluster.url
        elif not self.redis_url:
            self.valkey = embedded.ValkeyServer(self.dir / "valkey").start()
            self.redis_url = self.valkey.url
        if not self.database_url:
            self.pg = embedded.PostgresServer(self.dir / "pg").start()
            self.database_url = self.pg.url
        return self

    @property
    def env(self) -> dict[str, str]:
        """What every child of the stack runs with."""
        return service_env(redis_url=self.redis_url, database_url=self.database_url,
                           cluster=self._cluster[0], secret_key=self.secret_key,
                           pepper=self.pepper, shards=self.shards,
                           admin_tokens=self.admin_tokens, base=self.base_env, extra=self.extra)

    @property
    def web(self) -> Child:
        """The first web app."""
        return self.webs[0]

    @property
    def base(self) -> str:
        return self.web.url

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """``voting-service <args>`` to its end, output captured."""
        return subprocess.run([*CLI, *args], env=self.env, cwd=self.children.cwd,
                              capture_output=True, text=True, timeout=timeout)

    def migrate(self) -> None:
        done = self.cli("migrate")
        if done.returncode:
            raise RuntimeError(f"migrate failed:\n{done.stdout}{done.stderr}")

    def start_web(self, *args: str, workers: int = 1, port: int | None = None,
                  log: Path | None = None) -> Child:
        """``voting-service serve`` on 127.0.0.1 (``args`` may change the host)."""
        port = port or embedded.free_port()
        name = "web" if not self.webs else f"web-{len(self.webs) + 1}"
        web = self.children.start(name, [*CLI, "serve", "--host", "127.0.0.1", "--port",
                                         str(port), "--workers", str(workers), *args],
                                  self.env, log=log, port=port)
        self.webs.append(web)
        return web

    def start_flusher(self, name: str | None = None) -> Child:
        """One more flusher (``name``: its consumer name, default ``flusher-<n>``)."""
        name = name or f"flusher-{len(self.flushers) + 1}"
        flusher = self.children.start(name, [*CLI, "flusher", "--name", name], self.env)
        self.flushers.append(flusher)
        return flusher

    async def ready(self, timeout: float = 60.0) -> None:
        """Until every web app answers ``/readyz``."""
        for web in self.webs:
            await wait_ready(web, web.port or 0, timeout=timeout)

    def stop(self) -> None:
        self.children.stop_all()
        for server in (self.valkey, self.cluster, self.pg):
            if server is not None:
                server.stop()

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
