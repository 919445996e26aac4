"""Shared fixtures: the loopback fakes and a World with the real bot."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.fakes.apimart_fake import FakeApimart
from tests.fakes.discord import FakeDiscord
from tests.harness import API_KEY, TOKEN, World
from tests.servers import Postgres, S3Server, postgres_server, s3_server


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async with FakeDiscord(TOKEN) as discord_fake, FakeApimart(API_KEY) as apimart_fake:
        w = World(discord_fake, apimart_fake, tmp_path / "data")
        try:
            yield w
        finally:
            await w.close()


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """One real PostgreSQL server for the whole test session."""
    with postgres_server() as server:
        yield server


@pytest.fixture
async def postgres_url(postgres: Postgres) -> str:
    """A fresh, empty database on the session's server."""
    return await postgres.new_database()


@pytest.fixture(scope="session")
def s3() -> Iterator[S3Server]:
    """One real S3 server (SeaweedFS) for the whole test session."""
    with s3_server() as server:
        yield server
