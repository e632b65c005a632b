"""Staff accounts for the tests: created straight in PostgreSQL (argon2id hash, TOTP
secret already enrolled unless asked otherwise), and the two-step console sign-in."""

from __future__ import annotations

import time
from urllib.parse import urlsplit

import asyncpg
import httpx

from tests.conftest import Harness, client_for
from voting_service.accounts import passwords, totp

PASSWORD = "correct-horse-battery-2026"
_hash: dict[str, str] = {}
_spent: dict[str, int] = {}


def password_hash(password: str = PASSWORD) -> str:
    """One argon2id hash per password per test run (each costs tens of ms)."""
    if password not in _hash:
        _hash[password] = passwords.hash_password(password)
    return _hash[password]


async def make_account(conn: asyncpg.Connection, name: str, role: str = "admin",
                       enrolled: bool = True, password: str = PASSWORD) -> str:
    """A staff account; returns its TOTP secret (the one to enrol when not ``enrolled``)."""
    secret = totp.new_secret()
    await conn.execute(
        "INSERT INTO staff_accounts (name, role, password_hash, totp_secret, created_by)"
        " VALUES ($1, $2, $3, $4, 'test')", name, role, password_hash(password),
        secret if enrolled else None)
    return secret


def next_code(secret: str) -> str:
    """A code the server takes now and has not taken yet for this secret: one step either
    side of now is accepted, and each step once. The step before now is used only while it
    stays valid well past the server's check (near a step's end it would expire on a slow
    machine first); when the window's steps are all spent, this waits for the next step."""
    while True:
        t = time.time()
        now = totp.step_of(t)
        earliest = now - 1 if t % totp.PERIOD < totp.PERIOD - 10 else now
        step = max(_spent.get(secret, now - 2) + 1, earliest)
        if step <= now + 1:
            _spent[secret] = step
            return totp.hotp(secret, step)
        time.sleep(totp.PERIOD - t % totp.PERIOD + 0.05)  # the window moves on


async def sign_in(client: httpx.AsyncClient, name: str, secret: str,
                  password: str = PASSWORD, next_path: str = "/ops",
                  **headers: str) -> httpx.Response:
    """Password, then the TOTP code; returns the answer of the last step."""
    r = await client.post("/ops/login", data={"name": name, "password": password,
                                              "next": next_path}, headers=headers)
    if r.status_code != 303 or not r.headers["location"].startswith("/ops/2fa"):
        return r
    step = urlsplit(r.headers["location"])
    return await client.post(step.path, data={"code": next_code(secret), "next": next_path},
                             headers=headers)


async def signed_in(h: Harness, name: str = "wang.admin", role: str = "admin",
                    ip: str = "198.51.100.20") -> httpx.AsyncClient:
    """A console client of ``h``'s app from ``ip``, signed in as a new account ``name``."""
    secret = await make_account(h.pg, name, role)
    client = client_for(h.app, ip)
    r = await sign_in(client, name, secret)
    assert r.status_code == 303, r.text
    return client
