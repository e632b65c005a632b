"""``voting-service``: run, migrate, load, flush, check (DESIGN §9)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from . import local_stack
from .settings import ConfigurationError, Settings

log = logging.getLogger("voting_service")


class CliError(Exception):
    """A mistake in what the command was given: one line on stderr, exit status 2."""


_told_stack = False


def _settings() -> Settings:
    """Settings from the environment, or from the running ``up`` when none is set."""
    global _told_stack
    try:
        env, note = local_stack.environment(os.environ)
    except local_stack.StackNotRunning as exc:
        raise CliError(str(exc)) from exc
    if note and not _told_stack:
        print(note, file=sys.stderr)
        _told_stack = True
    try:
        return Settings.from_env(env)
    except ConfigurationError as exc:
        hint = ("" if note or "must be set" not in str(exc)
                else " (or start `make run`: the commands beside it use its servers)")
        raise CliError(f"{exc}{hint}") from exc


def _json_error(path: str, data: bytes) -> str:
    """Where a JSON text is malformed: line and column, as an editor shows them."""
    try:
        json.loads(data)
    except json.JSONDecodeError as exc:
        return f"{path}: malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
    except UnicodeDecodeError as exc:
        return f"{path}: not UTF-8 (byte {exc.start})"
    return f"{path}: malformed JSON"


def read_campaign(path: str) -> bytes:
    """The bytes of a campaign file, checked as ``POST /api/v1/admin/campaigns`` checks a body
    (before any server is asked): each mistake named with its JSON path or line and column."""
    import msgspec

    from .errors import VotingError
    from .models import CampaignIn, check_campaign

    try:
        data = Path(path).read_bytes()
    except FileNotFoundError as exc:
        raise CliError(f"{path}: no such file") from exc
    except OSError as exc:
        raise CliError(f"{path}: cannot read it ({exc.strerror or exc})") from exc
    try:
        campaign = msgspec.json.decode(data, type=CampaignIn)
    except msgspec.ValidationError as exc:
        raise CliError(f"{path}: {exc}") from exc
    except msgspec.DecodeError as exc:
        raise CliError(_json_error(path, data)) from exc
    try:
        check_campaign(campaign)
    except VotingError as exc:
        raise CliError(f"{path}: {exc.detail}") from exc
    return data


async def _connect_pg(settings: Settings) -> Any:
    import asyncpg

    if not settings.database_url:
        raise SystemExit("DATABASE_URL is not set")
    return await asyncpg.connect(settings.database_url)


async def _with_db(fn: Callable[[Any, Any, Settings], Awaitable[int]]) -> int:
    """Run ``fn(conn, redis, settings)`` with one PostgreSQL connection and a Redis client."""
    from .redis import store

    settings = _settings()
    conn = await _connect_pg(settings)
    redis = store.connect(settings)
    try:
        return await fn(conn, redis, settings)
    finally:
        await conn.close()
        await redis.aclose()


def cmd_migrate(args: argparse.Namespace) -> int:
    from .ledger import db

    async def run() -> int:
        conn = await _connect_pg(_settings())
        try:
            applied = await db.migrate(conn)
        finally:
            await conn.close()
        print(f"applied {len(applied)} migration(s): {applied}" if applied else "up to date")
        return 0

    return asyncio.run(run())


def cmd_campaign_load(args: argparse.Namespace) -> int:
    import msgspec

    from .errors import VotingError
    from .ledger import campaigns

    data = read_campaign(args.file)

    async def run(conn: Any, redis: Any, settings: Settings) -> int:
        try:
            campaign = await campaigns.load(conn, redis, data, settings.shards)
        except VotingError as exc:
            print(f"campaign load refused: {exc.detail}", file=sys.stderr)
            return 1
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            print(f"campaign load refused: {exc}", file=sys.stderr)
            return 2
        print(f"loaded campaign {campaign.id} with {len(campaign.candidates)} candidates")
        return 0

    return asyncio.run(_with_db(run))


def cmd_reconcile(args: argparse.Namespace) -> int:
    from .ledger import db, reconcile

    async def run(conn: Any, redis: Any, settings: Settings) -> int:
        ids = [args.campaign] if args.campaign else await db.campaign_ids(conn)
        drifted = 0
        for cid in ids:
            drift = await reconcile.reconcile(redis, conn, cid, settings.shards)
            for d in drift:
                print(f"{cid} {d.candidate_id}: redis={d.redis} postgres={d.postgres} "
                      f"unflushed={d.unflushed} (expected {d.expected})")
            drifted += len(drift)
            print(f"{cid}: {'no drift' if not drift else f'{len(drift)} candidate(s) drift'}")
        return 1 if drifted else 0

    return asyncio.run(_with_db(run))


def cmd_purge_objections(args: argparse.Namespace) -> int:
    """Delete objection submitters' personal data past their retention (audited)."""
    from .ledger import objections

    async def run(conn: Any, redis: Any, settings: Settings) -> int:
        n = await objections.purge(conn)
        print(f"personal data of {n} objection(s) deleted")
        return 0

    return asyncio.run(_with_db(run))


def cmd_rebuild(args: argparse.Namespace) -> int:
    from .ledger import campaigns, db, reconcile
    from .vote.registry import LiveCampaign

    async def run(conn: Any, redis: Any, settings: Settings) -> int:
        for cid in await campaigns.push_all_snapshots(conn, redis):
            if not args.force and await reconcile.votes_flowing(redis, cid, settings.shards, 10):
                print(f"{cid}: votes arrived in the last 10 s; pause the campaign or use --force")
                return 2
            campaign = await db.load_campaign(conn, cid)
            assert campaign is not None
            day = LiveCampaign(campaign).day(time.time())
            n = await reconcile.rebuild(redis, conn, cid, settings.shards, day.date,
                                        day.expire_at)
            print(f"{cid}: rebuilt tallies of {n} votes and quotas of {day.date}")
        return 0

    return asyncio.run(_with_db(run))


def cmd_export(args: argparse.Namespace) -> int:
    """Results for the expert panel: CSV (ranking) to stdout or a file, XLSX to a file."""
    import getpass

    from .ledger import db, export

    output = None if args.output in (None, "-") else Path(args.output)
    fmt = args.format or ("xlsx" if output and output.suffix.lower() == ".xlsx" else "csv")
    if fmt == "xlsx" and output is None:
        raise CliError("xlsx needs --output FILE")
    if output is not None and not output.parent.is_dir():
        raise CliError(f"--output {output}: no folder {output.parent}")

    async def run() -> int:
        conn = await _connect_pg(_settings())
        try:
            cid = args.campaign
            if cid is None:
                ids = await db.campaign_ids(conn)
                if len(ids) != 1:
                    raise SystemExit("name the campaign with --campaign "
                                     f"(campaigns: {', '.join(ids) or 'none'})")
                cid = ids[0]
            results = await export.collect(conn, cid)
            if results is None:
                raise SystemExit(f"no campaign {cid!r}")
            body = export.render(results, fmt)
            if output is None:
                sys.stdout.buffer.write(body)
                sys.stdout.buffer.flush()
            else:  # all or nothing: a failed export leaves no half-written file
                partial = output.with_name(f".{output.name}.partial")
                try:
                    partial.write_bytes(body)
                    os.replace(partial, output)
                finally:
                    partial.unlink(missing_ok=True)
            try:
                user = getpass.getuser()
            except (OSError, KeyError):
                user = str(os.getuid())
            await db.audit(conn, f"cli:{user}", "results.export", cid,
                           {"format": fmt, "file": str(output or "-"),
                            "total": results.total, "invalidated": results.invalidated})
        finally:
            await conn.close()
        print(f"{cid}: {len(results.ranking)} candidates, {results.total} valid votes "
              f"({results.invalidated} invalidated, left out) → {output or 'stdout'}",
              file=sys.stderr)
        return 0

    return asyncio.run(run())


def _read_quotas(path: Path) -> dict[str, int]:
    """A quota table: JSON ``{"南京市": 5, …}`` or a sheet with 推荐单位 and 名额 columns."""
    from .ledger import sheets

    body = path.read_bytes()
    if path.suffix.lower() == ".json":
        data = json.loads(body)
        if not isinstance(data, dict) or not all(
                isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in data.values()):
            raise SystemExit(f"{path}: quotas are {{\"recommender\": number, …}}")
        return {str(k): int(v) for k, v in data.items()}
    sheet = sheets.read(body, "xlsx" if path.suffix.lower() == ".xlsx" else "csv")
    if not sheet.rows:
        raise SystemExit(f"{path}: empty")
    header = [c.strip() for c in sheet.rows[0][1]]
    try:
        rec, quota = header.index("推荐单位"), header.index("名额")
    except ValueError:
        raise SystemExit(f"{path}: needs the columns 推荐单位 and 名额") from None
    out: dict[str, int] = {}
    for line, cells in sheet.rows[1:]:
        if len(cells) <= max(rec, quota) or not cells[quota].isdigit():
            raise SystemExit(f"{path}: row {line}: 名额 must be a whole number")
        out[cells[rec]] = int(cells[quota])
    return out


def _table(rows: list[list[str]]) -> str:
    """Rows as aligned columns (CJK characters count double)."""
    import unicodedata

    def width(text: str) -> int:
        return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)

    widths = [max(width(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell + " " * (w - width(cell)) for cell, w in zip(r, widths,
                                                                                 strict=True))
                     .rstrip() for r in rows)


def cmd_candidates_import(args: argparse.Namespace) -> int:
    import getpass

    from .errors import VotingError
    from .ledger import candidate_import, sheets

    path = Path(args.file)
    kind = "xlsx" if path.suffix.lower() == ".xlsx" else "csv"
    try:
        if path.stat().st_size > sheets.MAX_FILE_BYTES:  # before reading it into memory
            raise sheets.SheetError(f"文件超过 {sheets.MAX_FILE_BYTES // 1024 // 1024} MiB"
                                    " (file_too_large)", "file_too_large")
        sheet = sheets.read(path.read_bytes(), kind)
    except sheets.SheetError as exc:
        print(f"{path}: {exc}", file=sys.stderr)
        return 1
    quotas = _read_quotas(Path(args.quotas)) if args.quotas else None

    async def run(conn: Any, redis: Any, settings: Settings) -> int:
        try:
            user = getpass.getuser()
        except (OSError, KeyError):
            user = str(os.getuid())
        try:
            report = await candidate_import.run(
                conn, redis, args.campaign, sheet, pepper=str(settings.pepper),
                shards=settings.shards, dry_run=args.dry_run, actor=f"cli:{user}",
                quotas=quotas)
        except candidate_import.Rejected as exc:
            rows = [["行 row", "列 column", "错误 error"]] + [
                [str(e.row or "—"), e.column or "—", e.message] for e in exc.errors]
            print(f"{path}: refused, nothing imported ({len(exc.errors)} error(s))\n"
                  + _table(rows), file=sys.stderr)
            return 1
        except VotingError as exc:
            print(f"{path}: refused: {exc.detail}", file=sys.stderr)
            return 1
        rows = [["推荐单位 recommender", "人数 candidates"]] + [
            [rec, str(n)] for rec, n in report.by_recommender.items()]
        rows.append(["合计 total", str(report.imported)])
        verb = "would import (dry run, nothing changed)" if report.dry_run else "imported"
        print(f"{args.campaign}: {verb} {report.imported} candidates "
              f"({len(report.created)} new, {len(report.updated)} updated, "
              f"{len(report.removed)} replaced)\n" + _table(rows))
        return 0

    return asyncio.run(_with_db(run))


def cmd_publish(args: argparse.Namespace) -> int:
    """Publication (公示) from the command line: the same as the admin route, without an HTTP
    timeout over a long ledger (about 80,000 votes a second are frozen)."""
    import getpass

    from .errors import VotingError
    from .ledger import publication, transparency

    async def run(conn: Any, redis: Any, settings: Settings) -> int:
        try:
            user = getpass.getuser()
        except (OSError, KeyError):
            user = str(os.getuid())
        try:
            results = await publication.publish(
                conn, redis, args.campaign, shards=settings.shards, pepper=str(settings.pepper),
                actor=f"cli:{user}", note=args.note, log=transparency.config(settings))
        except VotingError as exc:
            print(f"{args.campaign}: not published: {exc.detail} ({exc.code})", file=sys.stderr)
            return 1
        print(f"{args.campaign}: published {results['total']} valid votes "
              f"({results['invalidated']['total']} struck out), digest {results['digest']}")
        return 0

    return asyncio.run(_with_db(run))


def cmd_purge(args: argparse.Namespace) -> int:
    """Retention (``ledger/purge``): with ``--dry-run`` only say what each published
    campaign's purge would change; otherwise purge those due, audited as ``cli:<user>``."""
    import datetime as dt
    import getpass

    from .ledger import purge

    async def run(conn: Any, redis: Any, settings: Settings) -> int:
        days = args.days if args.days is not None else settings.retention_days
        if days < 0:
            print("--days must be 0 or more", file=sys.stderr)
            return 2
        now = dt.datetime.now(dt.UTC)
        found = await purge.plans(conn, days, args.campaign)
        if args.campaign and not found:
            print(f"{args.campaign}: not published, nothing to purge", file=sys.stderr)
            return 1
        try:
            user = getpass.getuser()
        except (OSError, KeyError):
            user = str(os.getuid())
        for plan in found:
            if args.dry_run or not plan.due(now):
                print(("(dry run) " if args.dry_run else "") + plan.line(now))
                continue
            counts = await purge.purge(conn, redis, plan, str(settings.pepper),
                                       settings.shards, f"cli:{user}")
            print(f"{plan.campaign_id}: purged " + ", ".join(f"{k} {v}"
                                                            for k, v in counts.items()))
        if not found:
            print("no published campaign")
        return 0

    return asyncio.run(_with_db(run))


def _read_heads(path: str) -> list[dict[str, Any]]:
    """Signed tree heads gathered during the vote: NDJSON (one head a line, as the mirror
    keeps them) or one JSON list."""
    from .ledger import public_ledger

    data = Path(path).read_bytes()
    if data.lstrip().startswith(b"["):
        heads = public_ledger.strict_json(data)
    else:
        heads = [public_ledger.strict_json(line) for line in data.splitlines() if line.strip()]
    if not isinstance(heads, list) or not all(isinstance(h, dict) for h in heads):
        raise public_ledger.Mismatch(f"{path}: a list of heads")
    return heads


def cmd_verify(args: argparse.Namespace) -> int:
    """Recompute a downloaded ledger's digests and log, the published results and the signed
    heads: files only. Says what it could not check."""
    from .ledger import public_ledger

    results = None
    try:
        if args.results:
            try:
                results = public_ledger.strict_json(Path(args.results).read_bytes())
            except OSError as exc:
                print(f"{args.results}: not readable ({exc})", file=sys.stderr)
                return 1
        heads = _read_heads(args.heads) if args.heads else []
        if args.heads and not args.key:
            print("--heads needs --key (the log's Ed25519 public key, 64 hex digits: GET"
                  " /api/v1/log/key)", file=sys.stderr)
            return 2
        public = b""
        if args.key:
            try:
                public = bytes.fromhex(args.key)
            except ValueError:
                public = b""
            if len(public) != 32:
                print("--key is 64 hex digits (an Ed25519 public key)", file=sys.stderr)
                return 2
        with open(args.ledger, "rb") as f:
            chain, log = public_ledger.verify_all(f, results)
        checked, covered = 0, False
        if heads:
            if log is None:
                raise public_ledger.Mismatch("heads given, but the ledger has no log positions")
            checked, covered = public_ledger.check_heads(log, results, heads, public,
                                                         chain.campaign_id)
    except OSError as exc:
        print(f"{exc.filename or args.ledger}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except public_ledger.Mismatch as exc:
        print(f"MISMATCH {exc}", file=sys.stderr)
        return 1
    parts = [f"OK {chain.campaign_id}: {chain.votes} votes over {len(chain.days)} days,"
             f" digest {chain.digest}"]
    if results is not None:
        parts.append("the results' totals, ranks (withdrawn candidates: votes counted, no rank),"
                     " days, struck votes, published_at match")
    if log is not None:
        parts.append(f"the log's {log.size} leaves account for every vote and strike-out")
    if heads:
        parts.append(f"{checked} signed head(s) are prefixes of this ledger (consistent)")
    print("; ".join(parts))
    if results is not None and not covered:
        print("NOT CHECKED (no signed head covers the results): "
              + ", ".join(public_ledger.UNCHECKED)
              + "; give --heads with the head signed at publication and --key")
    elif results is None:
        print("NOT CHECKED: the results (give --results)")
    if log is None:
        print("NOT CHECKED: the transparency log (this ledger has no log positions)")
    elif not heads:
        print("NOT CHECKED: signed heads (give --heads and --key: heads gathered during the"
              " vote prove the ledger was not rewritten since)")
    return 0


def cmd_flusher(args: argparse.Namespace) -> int:
    import contextlib

    from . import gc_tuning
    from .ledger import flusher, partitions, transparency
    from .redis import store

    settings = _settings()

    async def run() -> int:
        redis = store.connect(settings)
        try:
            if args.check:
                ok, why = await flusher.healthy(redis, args.max_lag)
                print(why)
                return 0 if ok else 1
            if not settings.database_url:
                raise SystemExit("DATABASE_URL is not set")
            # idle reads block in XREAD for BLOCK_MS: their client waits longer than that
            reader = store.connect(settings, socket_timeout=flusher.BLOCK_MS / 1000 + 5)
            worker = flusher.Flusher(redis, settings.database_url, settings.shards,
                                     name=args.name, reader=reader,
                                     replica_acks=settings.redis_replica_acks,
                                     repair_interval=settings.drift_repair_interval,
                                     log=transparency.config(settings),
                                     log_positions=settings.log_positions)
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            log.info("flusher %s started", worker.name)
            gc_tuning.settle()
            # finished days' partitions get their lookup indexes (not in a one-off drain)
            sealing = None if args.burst else asyncio.create_task(
                partitions.run(settings.database_url, stop))
            try:
                await worker.run(stop, burst=args.burst)
            finally:
                if sealing is not None:  # a build cut short is dropped and redone next time
                    sealing.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await sealing
                await worker.close()
                await reader.aclose()
            return 0
        finally:
            await redis.aclose()

    return asyncio.run(run())


MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"


def _metrics_dir(port: int) -> Path:
    """Where the workers of one ``serve`` keep their metrics (``PROMETHEUS_MULTIPROC_DIR``,
    else one per port), emptied first: a previous run's counts are not this one's."""
    path = Path(os.environ.get(MULTIPROC_DIR) or
                Path(tempfile.gettempdir()) / f"voting-metrics-{port}")
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    for old in path.glob("*.db"):
        old.unlink()
    return path


def netloc(host: str, port: int) -> str:
    """``host:port``, with an IPv6 address in brackets (``[::]:8000``) as binds and URLs need."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def cmd_serve(args: argparse.Namespace) -> int:
    settings = _settings()  # fail early on bad configuration
    if args.workers > 1:
        os.environ[MULTIPROC_DIR] = str(_metrics_dir(args.port))
        os.execvp(sys.executable, [
            sys.executable, "-m", "gunicorn", "voting_service.app:app_from_env()",
            "-c", "python:voting_service.gunicorn_config",
            "-k", "voting_service.worker.VotingWorker", "-w", str(args.workers),
            "-b", netloc(args.host, args.port), "--graceful-timeout", "10",
            "--access-logfile", "-" if args.access_log else "/dev/null",
        ])
    import uvicorn

    from .web.server.contract import http_protocol

    uvicorn.run(
        "voting_service.app:app_from_env", factory=True, host=args.host, port=args.port,
        loop="uvloop", http=http_protocol(settings.head_timeout, settings.write_timeout),
        access_log=args.access_log, lifespan="on",
        proxy_headers=False,  # VOTING_TRUSTED_PROXIES alone decides (identity.client_ip)
        timeout_graceful_shutdown=10,
    )
    return 0


def _local_secrets(data_dir: Path) -> dict[str, str]:
    """Secrets for a local run, kept in the data dir so tokens survive a restart."""
    path = data_dir / "local-secrets.json"
    if path.exists():
        saved: dict[str, str] = json.loads(path.read_text())
        if "VOTING_LOG_SIGNING_KEY" not in saved:  # kept from before the log
            saved["VOTING_LOG_SIGNING_KEY"] = secrets.token_hex(32)
            path.write_text(json.dumps(saved, indent=2))
        return saved
    values = {
        "VOTING_SECRET_KEY": secrets.token_urlsafe(32),
        "VOTING_PEPPER": secrets.token_urlsafe(32),
        "VOTING_ADMIN_TOKENS": f"admin:{secrets.token_urlsafe(24)},ops:{secrets.token_urlsafe(24)}",
        "VOTING_LOG_SIGNING_KEY": secrets.token_hex(32),
    }
    data_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(values, indent=2))
    path.chmod(0o600)
    return values


LOCAL_ADMIN = "admin"


async def _local_admin(database_url: str, data_dir: Path) -> str:
    """The first local admin of ``up``: created with a generated password (kept in
    ``local-admin.json``, mode 0600, for the next ``make run`` to print) when the database
    has no admin yet; returns how to sign in."""
    import asyncpg

    from .accounts import passwords, store
    from .ledger import db

    path = data_dir / "local-admin.json"
    saved: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    conn = await asyncpg.connect(database_url)
    try:
        account = await store.account_by_name(conn, saved.get("name", LOCAL_ADMIN))
        if account is None and not await store.any_admin(conn):
            password = passwords.generate()
            hashed = await passwords.ahash(password)
            async with conn.transaction():
                account = await store.create_account(conn, LOCAL_ADMIN, "admin", hashed,
                                                     "cli:up")
                await db.audit(conn, "cli:up", "account.create", LOCAL_ADMIN,
                               {"role": "admin", "local": True})
            saved = {"name": LOCAL_ADMIN, "password": password}
            path.write_text(json.dumps(saved, indent=2))
            path.chmod(0o600)
    finally:
        await conn.close()
    if account is None:
        return "staff accounts exist already: sign in with yours (voting-service staff list)\n"
    if saved and passwords.verify(account.password_hash, saved.get("password", "")):
        how = f"name {account.name}, password {saved['password']}"
    else:
        how = f"name {account.name}, the password you set"
    second = ("then the code of your authenticator app" if account.enrolled else
              "then enrol an authenticator app by the QR code shown at the first sign-in")
    return f"sign in (local use only): {how}; {second}\n"


def cmd_up(args: argparse.Namespace) -> int:
    """Everything on one machine: embedded servers, migrations, demo data, web and flusher."""
    from . import embedded

    env = dict(os.environ)
    data_dir = Path(env.get("VOTING_DATA_DIR", ".voting-data")).resolve()
    for key, value in _local_secrets(data_dir).items():
        env.setdefault(key, value)
    env["VOTING_DATA_DIR"] = str(data_dir)
    servers: list[Any] = []
    children: list[subprocess.Popen[bytes]] = []
    stopping = False
    pointer: Path | None = None

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        if not env.get("REDIS_URL"):
            valkey = embedded.ValkeyServer(data_dir / "valkey").start()
            servers.append(valkey)
            env["REDIS_URL"] = valkey.url
            env.pop("VOTING_REDIS_CLUSTER", None)
            print(f"embedded Valkey on {valkey.url} (AOF, appendfsync always)", flush=True)
        if not env.get("DATABASE_URL"):
            pg = embedded.PostgresServer(data_dir / "postgres").start()
            servers.append(pg)
            env["DATABASE_URL"] = pg.url
            print(f"embedded PostgreSQL on {pg.url}", flush=True)
        me = [sys.executable, "-m", "voting_service.cli"]
        local_stack.write(data_dir, env, os.getpid())  # for the CLI commands beside us
        pointer = local_stack.point(env, data_dir, os.getpid())  # ... and in other folders
        subprocess.run([*me, "migrate"], env=env, check=True)
        sign_in = asyncio.run(_local_admin(env["DATABASE_URL"], data_dir))
        if not args.no_demo:
            subprocess.run([*me, "demo"], env=env, check=True)
        children.append(subprocess.Popen(
            [*me, "serve", "--host", args.host, "--port", str(args.port),
             "--workers", str(args.workers)], env=env, start_new_session=True))
        children.append(subprocess.Popen([*me, "flusher"], env=env, start_new_session=True))
        tokens = dict(t.strip().split(":", 1)[::-1] for t in env["VOTING_ADMIN_TOKENS"].split(",")
                      if ":" in t)
        shown = "".join(f"{role} bearer token for scripts (local use only): {token}\n"
                        for token, role in tokens.items() if role in ("admin", "ops"))
        print(f"\nvoting-service is up: http://{netloc(args.host, args.port)}/\n"
              f"ops console: http://{netloc(args.host, args.port)}/ops\n{sign_in}{shown}"
              f"data kept in {data_dir}; Ctrl-C stops everything\n"
              "the CLI (export, reconcile, flusher --check, campaign load ...) uses this "
              "stack from any folder"
              + (f" (recorded in {pointer})" if pointer else "") + "\n", flush=True)
        while not stopping:
            if any(c.poll() is not None for c in children):
                print("a child process exited; stopping", flush=True)
                break
            time.sleep(0.2)
        return 0 if stopping else 1
    finally:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(20)
            except subprocess.TimeoutExpired:
                child.kill()
        for server in reversed(servers):
            server.stop()
        local_stack.remove(data_dir, os.getpid())
        local_stack.unpoint(env, os.getpid())
        print("stopped", flush=True)


def cmd_demo(args: argparse.Namespace) -> int:
    """Load the demo campaign unless any campaign exists; always publish snapshots."""
    from .demo import demo_campaign
    from .ledger import campaigns, db

    async def run(conn: Any, redis: Any, settings: Settings) -> int:
        if not await db.campaign_ids(conn):
            data = json.dumps(demo_campaign(), ensure_ascii=False).encode()
            campaign = await campaigns.load(conn, redis, data)
            print(f"loaded demo campaign {campaign.id}")
        await campaigns.push_all_snapshots(conn, redis)
        return 0

    return asyncio.run(_with_db(run))


def _cli_actor() -> str:
    import getpass

    return f"cli:{getpass.getuser()}"


async def _pg_only(fn: Callable[[Any, Settings], Awaitable[int]]) -> int:
    """Run ``fn(conn, settings)`` with one PostgreSQL connection (accounts need no Redis)."""
    settings = _settings()
    conn = await _connect_pg(settings)
    try:
        return await fn(conn, settings)
    finally:
        await conn.close()


def _new_password(args: argparse.Namespace) -> tuple[str, bool]:
    """The password from stdin (``--password-stdin``), else a generated one to print."""
    from .accounts import passwords

    if getattr(args, "password_stdin", False):
        password = sys.stdin.readline().rstrip("\n")
        passwords.check_new(password)
        return password, False
    return passwords.generate(), True


def cmd_staff(args: argparse.Namespace) -> int:
    """Staff accounts of the ops console: create (an admin on a real deployment), list,
    disable, enable, reset the second factor or the password."""
    from .accounts import passwords, store
    from .ledger import db

    async def run(conn: Any, settings: Settings) -> int:
        actor = _cli_actor()
        if args.staff_command == "list":
            for a in await store.accounts(conn):
                print(f"{a.name}\t{a.role}\t{'enrolled' if a.enrolled else 'not enrolled'}"
                      f"\t{'disabled' if a.disabled else 'active'}")
            return 0
        if args.staff_command == "create":
            password, generated = _new_password(args)
            hashed = passwords.hash_password(password)
            async with conn.transaction():
                account = await store.create_account(conn, args.name, args.role, hashed, actor)
                await db.audit(conn, actor, "account.create", account.name,
                               {"role": account.role})
            print(f"created {account.role} account {account.name}")
            if generated:
                print(f"password (shown once): {password}")
            print("second factor: enrolled by QR code at the first sign-in to /ops")
            return 0
        account = await store.require_account(conn, args.name)
        async with conn.transaction():
            if args.staff_command == "disable":
                ended = await store.set_disabled(conn, account.id, True)
            elif args.staff_command == "enable":
                ended = await store.set_disabled(conn, account.id, False)
            elif args.staff_command == "reset-enrolment":
                ended = await store.reset_enrolment(conn, account.id)
            else:
                password, generated = _new_password(args)
                ended = await store.set_password(conn, account.id,
                                                 passwords.hash_password(password))
                if generated:
                    print(f"new password of {account.name} (shown once): {password}")
            await db.audit(conn, actor, f"account.{args.staff_command.replace('-', '_')}",
                           account.name, {"sessions_ended": ended})
        print(f"{account.name}: {args.staff_command} done, {ended} session(s) ended")
        return 0

    return asyncio.run(_pg_only(run))


def cmd_token(args: argparse.Namespace) -> int:
    """Named bearer tokens of machines (CI, scripts, Prometheus): create, list, revoke."""
    from .accounts import store
    from .ledger import db

    async def run(conn: Any, settings: Settings) -> int:
        actor = _cli_actor()
        if args.token_command == "list":
            for t in await store.tokens(conn):
                state = f"revoked {t['revoked_at']}" if t["revoked_at"] else "active"
                print(f"{t['name']}\t{t['role']}\t{state}\tby {t['created_by']}")
            return 0
        async with conn.transaction():
            if args.token_command == "create":
                token, view = await store.create_token(conn, args.name, args.role, actor)
                await db.audit(conn, actor, "token.create", view["name"], {"role": view["role"]})
                print(f"created {view['role']} token {view['name']} (shown once):\n{token}")
                return 0
            revoked = await store.revoke_token(conn, args.name)
            if revoked is None:
                raise CliError(f"no live token named {args.name!r}")
            await db.audit(conn, actor, "token.revoke", revoked["name"], {})
        print(f"revoked token {revoked['name']} (every worker refuses it within a second)")
        return 0

    return asyncio.run(_pg_only(run))


def cmd_audit_prune(args: argparse.Namespace) -> int:
    """Delete audit rows past ``VOTING_AUDIT_RETENTION_DAYS`` (at least 180) and old
    sessions; the web workers do the same every hour."""
    from .accounts import store

    async def run(conn: Any, settings: Settings) -> int:
        done = await store.prune(conn, settings.audit_retention_days)
        print(f"deleted {done['audit']} audit row(s) older than "
              f"{settings.audit_retention_days} days and {done['sessions']} old session(s)")
        return 0

    return asyncio.run(_pg_only(run))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="voting-service", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def web_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--host", default="127.0.0.1")
        p.add_argument("--port", type=int, default=8000)
        p.add_argument("--workers", type=int, default=1)

    up = sub.add_parser("up", help="all-in-one: embedded servers, demo data, web + flusher")
    web_options(up)
    up.add_argument("--no-demo", action="store_true", help="do not load the demo campaign")
    up.set_defaults(fn=cmd_up)
    serve = sub.add_parser("serve", help="the web app (gunicorn + uvicorn workers if > 1)")
    web_options(serve)
    serve.add_argument("--access-log", action="store_true")
    serve.set_defaults(fn=cmd_serve)
    fl = sub.add_parser("flusher", help="move the ledger from Redis into PostgreSQL")
    fl.add_argument("--name", help="consumer name (default: host-pid)")
    fl.add_argument("--burst", action="store_true", help="exit when nothing is left")
    fl.add_argument("--check", action="store_true", help="exit 0 if a flusher is healthy")
    fl.add_argument("--max-lag", type=float, default=60.0, help="seconds, for --check")
    fl.set_defaults(fn=cmd_flusher)
    sub.add_parser("migrate", help="apply SQL migrations").set_defaults(fn=cmd_migrate)
    sub.add_parser("demo", help="load the demo campaign if none").set_defaults(fn=cmd_demo)
    camp = sub.add_parser("campaign", help="campaign tools")
    camp_sub = camp.add_subparsers(dest="campaign_command", required=True)
    load = camp_sub.add_parser("load", help="create or replace a campaign from JSON")
    load.add_argument("file")
    load.set_defaults(fn=cmd_campaign_load)
    cands = sub.add_parser("candidates", help="the recommenders' candidates")
    cands_sub = cands.add_subparsers(dest="candidates_command", required=True)
    imp = cands_sub.add_parser("import",
                               help="import a 推荐人选申报表 (CSV or XLSX), all or nothing")
    imp.add_argument("campaign")
    imp.add_argument("file")
    imp.add_argument("--quotas",
                     help="quota table: JSON {recommender: n} or CSV/XLSX 推荐单位,名额")
    imp.add_argument("--dry-run", action="store_true", help="check and report, change nothing")
    imp.set_defaults(fn=cmd_candidates_import)
    pub = sub.add_parser("publish", help="publish the results (公示) after the vote closed")
    pub.add_argument("campaign")
    pub.add_argument("--note", default="", help="text shown with the results")
    pub.set_defaults(fn=cmd_publish)
    pur = sub.add_parser("purge", help="retention: pseudonymise voters and drop addresses "
                         "of campaigns published VOTING_RETENTION_DAYS ago")
    pur.add_argument("--campaign", help="only this campaign")
    pur.add_argument("--dry-run", action="store_true", help="say what would change, change nothing")
    pur.add_argument("--days", type=int, help="days after publication (default: the setting)")
    pur.set_defaults(fn=cmd_purge)
    ver = sub.add_parser("verify", help="recount a downloaded public ledger (no database)")
    ver.add_argument("ledger", help="the ledger file (GET /api/v1/campaigns/{cid}/ledger)")
    ver.add_argument("--results", help="the results JSON (GET …/results) to check against")
    ver.add_argument("--heads", help="signed tree heads gathered during the vote (NDJSON, as"
                     " scripts/log_mirror.py keeps them, or a JSON list)")
    ver.add_argument("--key", help="the log's Ed25519 public key, 64 hex digits")
    ver.set_defaults(fn=cmd_verify)
    rec = sub.add_parser("reconcile", help="compare Redis tallies with the ledger")
    rec.add_argument("--campaign")
    rec.set_defaults(fn=cmd_reconcile)
    pur = sub.add_parser("purge-objections",
                         help="delete objection submitters' data past their retention")
    pur.set_defaults(fn=cmd_purge_objections)
    reb = sub.add_parser("rebuild", help="restore Redis tallies and quotas from PostgreSQL")
    reb.add_argument("--force", action="store_true", help="even while votes are flowing")
    reb.set_defaults(fn=cmd_rebuild)
    exp = sub.add_parser("export", help="results (valid votes only) as CSV or XLSX")
    exp.add_argument("--campaign", help="campaign id (default: the only campaign)")
    exp.add_argument("--format", choices=["csv", "xlsx"],
                     help="default: xlsx for an --output ending in .xlsx, else csv")
    exp.add_argument("--output", help="file to write (default for csv: stdout)")
    exp.set_defaults(fn=cmd_export)
    staff = sub.add_parser("staff", help="staff accounts of the ops console")
    staff_sub = staff.add_subparsers(dest="staff_command", required=True)
    create = staff_sub.add_parser("create", help="a new account (default: an admin)")
    create.add_argument("name")
    create.add_argument("--role", choices=["admin", "ops", "auditor"], default="admin")
    create.add_argument("--password-stdin", action="store_true",
                        help="read the password from stdin (else one is generated)")
    staff_sub.add_parser("list", help="every account")
    for verb, text in (("disable", "disable (ends its sessions)"), ("enable", "enable again"),
                       ("reset-enrolment", "forget the second factor (enrol again)"),
                       ("reset-password", "a new password (ends its sessions)")):
        p = staff_sub.add_parser(verb, help=text)
        p.add_argument("name")
        if verb == "reset-password":
            p.add_argument("--password-stdin", action="store_true")
    staff.set_defaults(fn=cmd_staff)
    tok = sub.add_parser("token", help="named bearer tokens of machines")
    tok_sub = tok.add_subparsers(dest="token_command", required=True)
    tcreate = tok_sub.add_parser("create", help="a new token, printed once")
    tcreate.add_argument("name")
    tcreate.add_argument("--role", choices=["admin", "ops"], required=True)
    tok_sub.add_parser("list", help="every token (never the token itself)")
    trevoke = tok_sub.add_parser("revoke", help="revoke a token by name")
    trevoke.add_argument("name")
    tok.set_defaults(fn=cmd_token)
    aud = sub.add_parser("audit", help="the audit log")
    aud_sub = aud.add_subparsers(dest="audit_command", required=True)
    aud_sub.add_parser("prune", help="delete rows past the retention (at least 180 days)")
    aud.set_defaults(fn=cmd_audit_prune)
    return parser


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def main(argv: list[str] | None = None) -> None:
    """Run a command; a mistake or an unreachable server is one line on stderr, not a
    traceback: exit 2 for what the command was given, 1 for a server that did not answer."""
    import asyncpg
    import msgspec
    from redis.exceptions import RedisError

    from .errors import VotingError

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    parser = build_parser()
    args = parser.parse_args(argv)
    name = " ".join([parser.prog, args.command, *filter(None, [
        getattr(args, f"{args.command}_command", None)])])
    try:
        code = args.fn(args)
    except (CliError, ConfigurationError, VotingError, msgspec.MsgspecError) as exc:
        print(f"{name}: {_one_line(exc)}", file=sys.stderr)
        sys.exit(2)
    except OSError as exc:
        if exc.filename is not None:  # a file named on the command line
            print(f"{name}: {exc.filename}: {exc.strerror or _one_line(exc)}", file=sys.stderr)
            sys.exit(2)
        print(f"{name}: cannot reach the server: {_one_line(exc)}", file=sys.stderr)
        sys.exit(1)
    except (RedisError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        what = "Redis" if isinstance(exc, RedisError) else "PostgreSQL"
        print(f"{name}: {what}: {_one_line(exc)}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(code)


if __name__ == "__main__":
    main()
