"""Fixtures of the integration tests: console clients signed in to the in-process app."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.conftest import Harness
from tests.staff_support import signed_in


@pytest.fixture
async def admin(harness: Harness) -> AsyncIterator[httpx.AsyncClient]:
    """An admin (``wang.admin``) signed in to the console."""
    client = await signed_in(harness)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def ops(harness: Harness) -> AsyncIterator[httpx.AsyncClient]:
    """An ops account (``li.ops``) signed in to the console."""
    client = await signed_in(harness, "li.ops", "ops", "198.51.100.21")
    try:
        yield client
    finally:
        await client.aclose()
