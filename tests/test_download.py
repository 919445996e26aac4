"""kontext.adapters.http.download against a local aiohttp server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import gzip
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from aiohttp.typedefs import Handler

from kontext.adapters.http import download as download
from kontext.adapters.http.download import (
    DownloadFailed,
    DownloadRefused,
    DownloadTooLarge,
    address_allowed,
    download_capped,
)

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 1000


async def _image(request: web.Request) -> web.Response:
    return web.Response(body=PNG, content_type="image/png")


async def _sized(request: web.Request) -> web.Response:
    return web.Response(body=b"x" * int(request.match_info["n"]), content_type="image/jpeg")


async def _declared_huge(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "image/png"})
    resp.content_length = 10_000_000
    await resp.prepare(request)
    await resp.write(b"\x89PNG")
    await asyncio.sleep(30)  # we must give up on the header alone, not wait for this
    return resp


async def _gzip_bomb(request: web.Request) -> web.Response:
    body = gzip.compress(b"\x00" * 2_000_000)
    return web.Response(body=body, headers={"Content-Type": "image/png", "Content-Encoding": "gzip"})


async def _redirect(request: web.Request) -> web.Response:
    raise web.HTTPFound(request.query["to"])


async def _loop(request: web.Request) -> web.Response:
    n = int(request.match_info["n"])
    raise web.HTTPFound(f"/loop/{n + 1}")


async def _typed(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse()
    if ctype := request.query.get("type"):
        resp.headers["Content-Type"] = ctype
    resp.content_length = len(PNG)
    await resp.prepare(request)
    await resp.write(PNG)
    return resp


async def _missing(request: web.Request) -> web.Response:
    raise web.HTTPNotFound()


async def _slow(request: web.Request) -> web.Response:
    await asyncio.sleep(30)
    return web.Response(body=PNG)


async def _slow_body(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "image/png"})
    resp.content_length = len(PNG)
    await resp.prepare(request)
    await resp.write(PNG[:10])
    await asyncio.sleep(30)
    return resp


async def _no_default_type(request: web.Request, response: web.StreamResponse) -> None:
    # aiohttp adds "application/octet-stream" to bodies without a type; /typed?type= sends none.
    if request.path == "/typed" and not request.query.get("type"):
        response.headers.popall("Content-Type", None)


@dataclass
class Server:
    """The local image server and what it saw: request paths, Host headers, bytes streamed."""

    hits: list[str] = field(default_factory=list)
    streamed: list[int] = field(default_factory=list)
    hosts: list[str] = field(default_factory=list)
    stream_ended: asyncio.Event = field(default_factory=asyncio.Event)
    server: TestServer = field(init=False)

    def url(self, path: str) -> str:
        return str(self.server.make_url(path))

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._record])
        app.on_response_prepare.append(_no_default_type)
        app.router.add_get("/image.png", _image)
        app.router.add_get("/sized/{n}", _sized)
        app.router.add_get("/declared-huge", _declared_huge)
        app.router.add_get("/endless", self._endless)
        app.router.add_get("/gzip-bomb", _gzip_bomb)
        app.router.add_get("/redirect", _redirect)
        app.router.add_get("/loop/{n}", _loop)
        app.router.add_get("/typed", _typed)
        app.router.add_get("/missing", _missing)
        app.router.add_get("/slow", _slow)
        app.router.add_get("/slow-body", _slow_body)
        return app

    @web.middleware
    async def _record(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.hits.append(request.path_qs)
        self.hosts.append(request.headers.get("Host", ""))
        return await handler(request)

    async def _endless(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "image/png"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        try:
            for _ in range(10_000):
                await resp.write(b"\x00" * 16384)
                self.streamed.append(16384)
                await asyncio.sleep(0)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self.stream_ended.set()
        return resp


@pytest.fixture
async def srv() -> AsyncIterator[Server]:
    state = Server()
    state.server = TestServer(state.app(), host="127.0.0.1")
    await state.server.start_server()
    try:
        yield state
    finally:
        await state.server.close()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


# --- success ------------------------------------------------------------------------------------


async def test_plain_download(srv: Server, session: aiohttp.ClientSession) -> None:
    got = await download_capped(session, srv.url("/image.png"), max_bytes=10_000, allow_private=True)
    assert (got.data, got.content_type, got.final_url) == (PNG, "image/png", srv.url("/image.png"))


async def test_exactly_max_bytes_is_allowed(srv: Server, session: aiohttp.ClientSession) -> None:
    got = await download_capped(session, srv.url("/sized/5000"), max_bytes=5000, allow_private=True)
    assert len(got.data) == 5000


# --- caps ---------------------------------------------------------------------------------------


async def test_cap_by_content_length_before_reading(srv: Server, session: aiohttp.ClientSession) -> None:
    started = time.monotonic()
    with pytest.raises(DownloadTooLarge) as info:
        await download_capped(session, srv.url("/declared-huge"), max_bytes=1_000_000, allow_private=True)
    assert (info.value.size, info.value.limit) == (10_000_000, 1_000_000)
    assert time.monotonic() - started < 5  # did not wait for the body


async def test_cap_by_content_length_small(srv: Server, session: aiohttp.ClientSession) -> None:
    with pytest.raises(DownloadTooLarge) as info:
        await download_capped(session, srv.url("/sized/5001"), max_bytes=5000, allow_private=True)
    assert (info.value.size, info.value.limit) == (5001, 5000)


async def test_cap_while_streaming_chunked(srv: Server, session: aiohttp.ClientSession) -> None:
    with pytest.raises(DownloadTooLarge) as info:
        await download_capped(session, srv.url("/endless"), max_bytes=200_000, allow_private=True)
    assert (info.value.size, info.value.limit) == (None, 200_000)
    await asyncio.wait_for(srv.stream_ended.wait(), 10)  # the server saw the connection go
    # we stopped reading soon after the cap: nowhere near the 160 MB the server would send
    assert sum(srv.streamed) < 5_000_000


async def test_cap_applies_to_decoded_bytes(srv: Server, session: aiohttp.ClientSession) -> None:
    # ~2 KB on the wire, 2 MB once gunzipped: the running cap catches it.
    with pytest.raises(DownloadTooLarge) as info:
        await download_capped(session, srv.url("/gzip-bomb"), max_bytes=100_000, allow_private=True)
    assert info.value.size is None


# --- redirects ----------------------------------------------------------------------------------


async def test_redirect_followed(srv: Server, session: aiohttp.ClientSession) -> None:
    got = await download_capped(
        session, srv.url("/redirect?to=/image.png"), max_bytes=10_000, allow_private=True
    )
    assert got.data == PNG
    assert got.final_url == srv.url("/image.png")
    assert srv.hits == ["/redirect?to=/image.png", "/image.png"]


@pytest.mark.parametrize(
    "target",
    ["file:///etc/passwd", "ftp://127.0.0.1/x.png", "gopher://127.0.0.1/", "data:image/png;base64,AA"],
)
async def test_redirect_to_refused_scheme(srv: Server, session: aiohttp.ClientSession, target: str) -> None:
    url = str(srv.server.make_url("/redirect").with_query(to=target))
    with pytest.raises(DownloadRefused):
        await download_capped(session, url, max_bytes=10_000, allow_private=True)
    assert len(srv.hits) == 1


async def test_too_many_redirects(srv: Server, session: aiohttp.ClientSession) -> None:
    with pytest.raises(DownloadFailed) as info:
        await download_capped(
            session, srv.url("/loop/0"), max_bytes=10_000, allow_private=True, max_redirects=3
        )
    assert info.value.status == 302
    assert srv.hits == ["/loop/0", "/loop/1", "/loop/2", "/loop/3"]


async def test_zero_redirects_allowed(srv: Server, session: aiohttp.ClientSession) -> None:
    with pytest.raises(DownloadFailed):
        await download_capped(
            session, srv.url("/redirect?to=/image.png"), max_bytes=10_000, allow_private=True, max_redirects=0
        )
    assert srv.hits == ["/redirect?to=/image.png"]


# --- private addresses --------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_loopback_refused_without_allow_private(
    srv: Server, session: aiohttp.ClientSession, host: str
) -> None:
    url = str(srv.server.make_url("/image.png").with_host(host))
    with pytest.raises(DownloadRefused):
        await download_capped(session, url, max_bytes=10_000)
    assert srv.hits == []  # refused before connecting


async def test_every_redirect_hop_is_rechecked(
    srv: Server, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Pretend our test server's 127.0.0.1 is public; its redirect to the metadata service must be refused.
    real = download.address_allowed
    monkeypatch.setattr(download, "address_allowed", lambda a: a == "127.0.0.1" or real(a))
    url = str(srv.server.make_url("/redirect").with_query(to="http://169.254.169.254/latest/meta-data/"))
    with pytest.raises(DownloadRefused, match=r"169\.254\.169\.254"):
        await download_capped(session, url, max_bytes=10_000)
    assert srv.hits == ["/redirect?to=http://169.254.169.254/latest/meta-data/"]
    # and the same server is fine when it redirects to itself
    got = await download_capped(session, srv.url("/redirect?to=/image.png"), max_bytes=10_000)
    assert got.data == PNG


@pytest.mark.parametrize(
    "url",
    ["file:///etc/passwd", "ftp://example.com/a.png", "javascript:alert(1)", "//no-scheme/x", "http://"],
)
async def test_refused_urls(session: aiohttp.ClientSession, url: str) -> None:
    with pytest.raises(DownloadRefused):
        await download_capped(session, url, max_bytes=10_000, allow_private=True)


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("8.8.8.8", True),
        ("1.1.1.1", True),
        ("2606:4700:4700::1111", True),
        ("127.0.0.1", False),
        ("127.8.9.10", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("240.0.0.1", False),
        ("255.255.255.255", False),
        ("::1", False),
        ("::", False),
        ("fe80::1%eth0", False),
        ("fc00::1", False),
        ("ff02::1", False),
        ("::ffff:127.0.0.1", False),
        ("::ffff:8.8.8.8", True),
        ("2002:7f00:1::", False),  # 6to4 wrapping 127.0.0.1
        ("64:ff9b::a00:1", False),  # NAT64 wrapping 10.0.0.1
        ("not-an-ip", False),
    ],
)
def test_address_allowed(address: str, allowed: bool) -> None:
    assert address_allowed(address) is allowed


# --- status, type, timeouts ---------------------------------------------------------------------


async def test_404(srv: Server, session: aiohttp.ClientSession) -> None:
    with pytest.raises(DownloadFailed) as info:
        await download_capped(session, srv.url("/missing"), max_bytes=10_000, allow_private=True)
    assert info.value.status == 404


@pytest.mark.parametrize("accept", [None, ("image/",)])
@pytest.mark.parametrize("ctype", ["text/html; charset=utf-8", "application/xhtml+xml"])
async def test_html_is_refused(
    srv: Server, session: aiohttp.ClientSession, ctype: str, accept: tuple[str, ...] | None
) -> None:
    url = str(srv.server.make_url("/typed").with_query(type=ctype))
    with pytest.raises(DownloadFailed, match="content type") as info:
        await download_capped(session, url, max_bytes=10_000, allow_private=True, accept_types=accept)
    assert info.value.status == 200


@pytest.mark.parametrize(
    ("ctype", "accept", "ok"),
    [
        ("image/png", ("image/",), True),
        ("image/webp", ("image/*",), True),
        ("IMAGE/PNG; foo=bar", ("image/png", "image/jpeg"), True),
        ("image/gif", ("image/png", "image/jpeg"), False),
        ("text/plain", ("image/",), False),
        ("text/plain", None, True),
        ("application/octet-stream", ("image/",), True),
        ("", ("image/",), True),  # missing: unknown, allowed (bytes are sniffed later)
    ],
)
async def test_accept_types(
    srv: Server, session: aiohttp.ClientSession, ctype: str, accept: tuple[str, ...] | None, ok: bool
) -> None:
    url = str(srv.server.make_url("/typed").with_query(type=ctype))
    if ok:
        got = await download_capped(session, url, max_bytes=10_000, allow_private=True, accept_types=accept)
        assert got.data == PNG
        assert got.content_type == (ctype.split(";")[0].lower() or None)
    else:
        with pytest.raises(DownloadFailed):
            await download_capped(session, url, max_bytes=10_000, allow_private=True, accept_types=accept)


@pytest.mark.parametrize("path", ["/slow", "/slow-body"])
async def test_timeout(srv: Server, session: aiohttp.ClientSession, path: str) -> None:
    started = time.monotonic()
    with pytest.raises(DownloadFailed, match="timed out") as info:
        await download_capped(session, srv.url(path), max_bytes=10_000, allow_private=True, timeout=0.3)
    assert info.value.status is None
    assert time.monotonic() - started < 5


async def test_connection_refused(session: aiohttp.ClientSession) -> None:
    server = TestServer(web.Application(), host="127.0.0.1")
    await server.start_server()
    url = str(server.make_url("/x"))
    await server.close()
    with pytest.raises(DownloadFailed) as info:
        await download_capped(session, url, max_bytes=10_000, allow_private=True)
    assert info.value.status is None


async def test_query_tokens_are_not_in_error_details(srv: Server, session: aiohttp.ClientSession) -> None:
    with pytest.raises(DownloadFailed) as info:
        await download_capped(session, srv.url("/missing?ex=1&hm=SECRET"), max_bytes=10, allow_private=True)
    assert "SECRET" not in str(info.value)


def _fake_dns(monkeypatch: pytest.MonkeyPatch, answers: dict[str, list[str]]) -> list[str]:
    """Resolve the given names to the given addresses (and treat 127.0.0.1-2 as public)."""
    loop = asyncio.get_running_loop()
    real_getaddrinfo = loop.getaddrinfo
    lookups: list[str] = []

    async def getaddrinfo(host: str, port: int, **kwargs: Any) -> Any:
        if host in answers:
            lookups.append(host)
            return [
                (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
                for a in answers[host]
            ]
        return await real_getaddrinfo(host, port, **kwargs)

    monkeypatch.setattr(loop, "getaddrinfo", getaddrinfo)
    real_allowed = download.address_allowed
    monkeypatch.setattr(
        download, "address_allowed", lambda a: a in ("127.0.0.1", "127.0.0.2") or real_allowed(a)
    )
    return lookups


async def test_connection_is_pinned_to_the_checked_address(
    srv: Server, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    # "images.example" exists only in our fake DNS: the download works only if aiohttp connects to
    # the address we checked instead of resolving the name again (which could rebind it).
    lookups = _fake_dns(monkeypatch, {"images.example": ["127.0.0.1"]})
    url = str(srv.server.make_url("/image.png").with_host("images.example"))
    got = await download_capped(session, url, max_bytes=10_000)
    assert got.data == PNG and got.final_url == url
    assert lookups == ["images.example"]
    assert srv.hosts == [f"images.example:{srv.server.port}"]


async def test_any_private_address_refuses_the_host(
    srv: Server, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_dns(monkeypatch, {"mixed.example": ["127.0.0.1", "10.0.0.7"]})
    url = str(srv.server.make_url("/image.png").with_host("mixed.example"))
    with pytest.raises(DownloadRefused, match=r"10\.0\.0\.7"):
        await download_capped(session, url, max_bytes=10_000)
    assert srv.hits == []


async def test_unreachable_address_falls_back_to_the_next(
    srv: Server, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Nothing listens on 127.0.0.2 (connection refused): the next checked address is tried.
    _fake_dns(monkeypatch, {"dual.example": ["127.0.0.2", "127.0.0.1"]})
    url = str(srv.server.make_url("/image.png").with_host("dual.example"))
    got = await download_capped(session, url, max_bytes=10_000)
    assert got.data == PNG
    assert srv.hits == ["/image.png"]


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    assert shutil.which("openssl"), "openssl is needed to make test certificates (.ci/run installs it)"
    folder = tmp_path_factory.mktemp("certs")
    for name in ("images.example", "other.example"):
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-days", "1", "-subj", f"/CN={name}", "-addext", f"subjectAltName=DNS:{name}",
             "-keyout", str(folder / f"{name}.key"), "-out", str(folder / f"{name}.crt")],
            check=True, capture_output=True,
        )  # fmt: skip
    return folder


@pytest.mark.parametrize(("cert_name", "ok"), [("images.example", True), ("other.example", False)])
async def test_https_keeps_the_tls_name_when_pinned(
    certs: Path, monkeypatch: pytest.MonkeyPatch, cert_name: str, ok: bool
) -> None:
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(certs / f"{cert_name}.crt", certs / f"{cert_name}.key")
    client_ctx = ssl.create_default_context(cafile=str(certs / f"{cert_name}.crt"))

    async def image(request: web.Request) -> web.Response:
        return web.Response(body=PNG, content_type="image/png")

    app = web.Application()
    app.router.add_get("/image.png", image)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server(ssl=server_ctx)
    _fake_dns(monkeypatch, {"images.example": ["127.0.0.1"]})
    url = f"https://images.example:{server.port}/image.png"
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_ctx)) as session:
            if ok:
                got = await download_capped(session, url, max_bytes=10_000)
                assert got.data == PNG
            else:  # the certificate is checked against images.example, not the pinned IP
                with pytest.raises(DownloadFailed, match="certificate"):
                    await download_capped(session, url, max_bytes=10_000)
    finally:
        await server.close()
