"""Fixtures of the integration tests: console clients signed in to the in-process app."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.conftest import Harness
from tests.staff_support import signed_in


@contextlib.asynccontextmanager
async def console(h: Harness, *account: str) -> AsyncIterator[httpx.AsyncClient]:
    """:func:`signed_in` (``account``: name, role, address), closed on the way out."""
    client = await signed_in(h, *account)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def admin(harness: Harness) -> AsyncIterator[httpx.AsyncClient]:
    """An admin (``wang.admin``) signed in to the console."""
    async with console(harness) as client:
        yield client


@pytest.fixture
async def ops(harness: Harness) -> AsyncIterator[httpx.AsyncClient]:
    """An ops account (``li.ops``) signed in to the console."""
    async with console(harness, "li.ops", "ops", "198.51.100.21") as client:
        yield client
