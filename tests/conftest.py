"""Shared fixtures: the loopback fakes and a World with the real bot."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.fakes.apimart_fake import FakeApimart
from tests.fakes.discord import FakeDiscord
from tests.harness import API_KEY, TOKEN, World


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async with FakeDiscord(TOKEN) as discord_fake, FakeApimart(API_KEY) as apimart_fake:
        w = World(discord_fake, apimart_fake, tmp_path / "data")
        try:
            yield w
        finally:
            await w.close()
