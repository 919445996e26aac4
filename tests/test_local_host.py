"""IMAGE_HOST=local and the web server: signed expiring paths, no listing, no traversal."""

from __future__ import annotations

import os
import time
from pathlib import Path

import aiohttp
import pytest

from kontext.adapters.hosting.local import LocalHost, load_secret
from kontext.adapters.web.app import build_app, start_web
from kontext.support.metrics import Metrics
from tests.scrape import Scrape

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


@pytest.fixture
async def served(tmp_path: Path):
    secret = load_secret(tmp_path / "secret")
    assert (tmp_path / "secret").stat().st_mode & 0o777 == 0o600
    host = LocalHost(tmp_path / "hosted", "http://placeholder", secret, ttl_s=60)
    app = build_app(Metrics(), lambda: {"ok": True}, host.resolve)
    runner, port = await start_web(app, "127.0.0.1", 0)
    host.public_base_url = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as session:
        yield host, session, f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_serves_hosted_file_then_deletes(served) -> None:
    host, session, _base = served
    hosted = await host.put("job1", PNG, "image/png", "png", None)
    async with session.get(hosted.url) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "image/png"
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert await resp.read() == PNG
    await host.delete(hosted.handle)
    async with session.get(hosted.url) as resp:
        assert resp.status == 404
    assert list(host.directory.iterdir()) == []


async def test_tampering_traversal_listing_and_expiry(served) -> None:
    host, session, base = served
    hosted = await host.put("job1", PNG, "image/png", "png", None)
    expiry, sig, name = hosted.url.split("/")[-3:]
    bad_sig = ("0" if sig[0] != "0" else "1") + sig[1:]
    later = str(int(expiry) + 3600)
    for path in [
        f"/files/{expiry}/{bad_sig}/{name}",  # tampered signature
        f"/files/{later}/{sig}/{name}",  # extended expiry
        f"/files/{expiry}/{sig}/{name.replace('.png', '.jpg')}",  # other extension
        f"/files/{expiry}/{sig}/..%2F..%2Fsecret",  # traversal
        f"/files/{expiry}/{sig}/../../secret",
        "/files/",  # listing
        "/files",
        f"/files/{expiry}/{sig}/",
    ]:
        async with session.get(base + path) as resp:
            assert resp.status == 404, path
    # expired links return 404 even with a valid signature
    past = int(time.time()) - 5
    expired = host.url_for(name.split(".")[0], "png", past)
    async with session.get(expired) as resp:
        assert resp.status == 404


async def test_sweep_removes_only_expired(served) -> None:
    host, _session, _base = served
    old = await host.put("a", PNG, "image/png", "png", None)
    new = await host.put("b", PNG, "image/png", "png", None)
    os.utime(host.directory / str(old.handle), (time.time() - 120, time.time() - 120))
    assert host.sweep() == 1
    assert [p.name for p in host.directory.iterdir()] == [new.handle]


async def test_healthz_and_metrics(served) -> None:
    host, session, base = served
    async with session.get(base + "/healthz") as resp:
        assert resp.status == 200
        assert (await resp.json())["ok"] is True
    hosted = await host.put("job1", PNG, "image/png", "png", None)
    async with session.get(hosted.url) as resp:
        assert resp.status == 200
    async with session.get(base + "/files/1/2/3.png") as resp:
        assert resp.status == 404
    async with session.get(base + "/metrics") as resp:
        assert resp.status == 200
        text = await resp.text()
    metrics = Scrape.parse(text)
    assert metrics.value("kontext_hosted_files_total", outcome="served") == 1
    assert metrics.value("kontext_hosted_files_total", outcome="denied") == 1
