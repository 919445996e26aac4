"""Capped, SSRF-safe HTTP(S) downloads (attachments, API results).

Rules: http/https only; every hop's host is resolved and refused when any of its addresses is not
public (loopback, private, link-local, multicast, reserved, unspecified, CGNAT, and IPv6 forms that
embed such an IPv4) unless ``allow_private``; the connection is then made to a checked address
(pinned: no second DNS lookup can rebind it), with ``Host`` and the TLS name kept; redirects are
followed by hand (at most ``max_redirects``), each hop re-checked; the body is capped by
Content-Length up front and by a running count while streaming (also after gzip decoding); one
overall timeout covers all hops and the body.

The exceptions here are plain (no user wording); callers map them to :mod:`kontext.domain.errors`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from dataclasses import dataclass
from typing import Final

import aiohttp
from yarl import URL

from kontext.services.ports import FetchError, FetchTooLarge

log = logging.getLogger("kontext.adapters.http.download")

__all__ = [
    "DownloadError",
    "DownloadFailed",
    "DownloadRefused",
    "DownloadTooLarge",
    "Downloaded",
    "HttpDownloader",
    "address_allowed",
    "download_capped",
]

#: Bodies are read this much at a time: a capped download stops within one chunk of its cap.
CHUNK_SIZE: Final = 64 * 1024
#: Addresses of one host tried in turn when connecting fails (e.g. IPv6 without a route).
MAX_ADDRESSES: Final = 4
REDIRECT_STATUSES: Final = frozenset({301, 302, 303, 307, 308})
#: Refused whatever ``accept_types`` says: an HTML page is a login/error page, never the file.
HTML_TYPES: Final = frozenset({"text/html", "application/xhtml+xml"})
#: Said by servers that do not know; treated like a missing Content-Type (the bytes are sniffed later).
UNKNOWN_TYPES: Final = frozenset({"application/octet-stream", "binary/octet-stream"})
_NAT64: Final = ipaddress.ip_network("64:ff9b::/96")


class DownloadError(Exception):
    """Base class of download failures."""


class DownloadRefused(DownloadError):
    """The URL is not allowed (scheme, or a non-public address)."""


class DownloadTooLarge(DownloadError):
    """The body is larger than ``limit`` bytes (``size`` when the server declared it)."""

    def __init__(self, detail: str, *, size: int | None, limit: int) -> None:
        super().__init__(detail)
        self.size = size
        self.limit = limit


class DownloadFailed(DownloadError):
    """Non-2xx status, wrong content type, too many redirects, network error or timeout."""

    def __init__(self, detail: str, *, status: int | None = None) -> None:
        super().__init__(detail)
        self.status = status


@dataclass(frozen=True)
class Downloaded:
    data: bytes
    content_type: str | None  # lower-case media type without parameters; None when not sent
    final_url: str


def address_allowed(address: str) -> bool:
    """True when ``address`` (an IP literal) is a public unicast address."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:  # ::ffff:a.b.c.d is simply a.b.c.d
            return address_allowed(str(ip.ipv4_mapped))
        embedded: ipaddress.IPv4Address | None = ip.sixtofour
        if embedded is None and ip.teredo is not None:
            embedded = ip.teredo[1]
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None and not address_allowed(str(embedded)):
            return False
    return not (
        ip.is_loopback
        or ip.is_private
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or not ip.is_global
    )


def _safe_url(url: URL) -> str:
    """The URL for logs and messages: no userinfo, no query (signed CDN URLs carry tokens there)."""
    url = url.with_query(None).with_fragment(None)
    if url.absolute and url.host:
        url = url.with_user(None)
    return str(url)


def _check_scheme(url: URL) -> None:
    if url.scheme not in ("http", "https"):
        raise DownloadRefused(f"scheme {url.scheme or '(none)'!r} is not allowed: {_safe_url(url)}")
    if not url.host:
        raise DownloadRefused(f"URL has no host: {_safe_url(url)}")


async def _resolve_public(url: URL) -> list[str]:
    """Resolve the host; refuse it if ANY address is not public. IPv4 first (most routable)."""
    host = url.raw_host
    assert host is not None
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise DownloadFailed(f"cannot resolve {host!r}: {exc}") from exc
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise DownloadFailed(f"{host!r} resolved to no address")
    refused = sorted(a for a in addresses if not address_allowed(a))
    if refused:
        raise DownloadRefused(f"{host!r} resolves to non-public address(es) {', '.join(refused)}")
    return sorted(addresses, key=lambda a: ":" in a)


async def _get(
    session: aiohttp.ClientSession, url: URL, *, allow_private: bool, connect_timeout: float
) -> aiohttp.ClientResponse:
    """One GET without following redirects.

    Unless ``allow_private``, the connection is pinned to an address we checked (the URL's host is
    replaced by the IP; ``Host`` and, for https, the TLS server name / certificate check keep the
    original name), so a second DNS answer cannot point the request elsewhere (DNS rebinding).
    """
    headers = {"Accept-Encoding": "identity"}
    if allow_private:
        return await session.get(url, allow_redirects=False, headers=headers)
    addresses = await _resolve_public(url)
    headers["Host"] = url.host_port_subcomponent or url.raw_host or ""
    server_hostname = url.raw_host if url.scheme == "https" else None
    error: aiohttp.ClientConnectorError | None = None
    for address in addresses[:MAX_ADDRESSES]:
        try:
            return await session.get(
                url.with_host(address),
                allow_redirects=False,
                headers=headers,
                server_hostname=server_hostname,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout),
            )
        except aiohttp.ClientConnectorError as exc:  # not connected, nothing sent: try the next one
            error = exc
            log.debug("connecting to %s for %s failed: %s", address, url.raw_host, exc)
    raise DownloadFailed(f"cannot connect to {url.raw_host!r} ({', '.join(addresses)}): {error}") from error


def _media_type(response: aiohttp.ClientResponse) -> str | None:
    raw = response.headers.get("Content-Type")
    if not raw:
        return None
    return raw.split(";", 1)[0].strip().lower() or None


def _type_accepted(media_type: str | None, accept_types: tuple[str, ...] | None) -> bool:
    if media_type in HTML_TYPES:
        return False
    if accept_types is None or media_type is None or media_type in UNKNOWN_TYPES:
        return True
    for accepted in accept_types:
        accepted = accepted.lower()
        if accepted.endswith("/*"):
            accepted = accepted[:-1]
        if media_type == accepted or (accepted.endswith("/") and media_type.startswith(accepted)):
            return True
    return False


def _redirect_target(response: aiohttp.ClientResponse, current: URL, hop: int, max_redirects: int) -> URL:
    """Where a redirect points (re-checked by the caller), or why it cannot be followed."""
    status = response.status
    location = response.headers.get("Location")
    if not location:
        raise DownloadFailed(f"{status} redirect without Location", status=status)
    if hop == max_redirects:
        raise DownloadFailed(
            f"more than {max_redirects} redirects (last to {_safe_url(current)})", status=status
        )
    try:
        return current.join(URL(location))
    except ValueError as exc:
        raise DownloadFailed(f"bad redirect Location: {exc}", status=status) from exc


async def _read_capped(
    response: aiohttp.ClientResponse, url: URL, *, max_bytes: int, accept_types: tuple[str, ...] | None
) -> Downloaded:
    """The body of a final (non-redirect) response: status, type and size checked, never over the cap."""
    status = response.status
    if not 200 <= status < 300:
        raise DownloadFailed(f"HTTP {status} from {_safe_url(url)}", status=status)
    media_type = _media_type(response)
    if not _type_accepted(media_type, accept_types):
        raise DownloadFailed(f"unexpected content type {media_type!r} from {_safe_url(url)}", status=status)
    declared = response.content_length
    if declared is not None and declared > max_bytes:
        raise DownloadTooLarge(
            f"Content-Length {declared} > {max_bytes} from {_safe_url(url)}", size=declared, limit=max_bytes
        )
    # Pieces as they arrive, joined once: one copy of the body (a growing bytearray copied it on
    # every reallocation, then once more into bytes: ~6 % of the event loop's time per job).
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(CHUNK_SIZE):
        size += len(chunk)
        if size > max_bytes:
            raise DownloadTooLarge(
                f"body exceeds {max_bytes} bytes from {_safe_url(url)}", size=None, limit=max_bytes
            )
        chunks.append(chunk)
    return Downloaded(data=b"".join(chunks), content_type=media_type, final_url=str(url))


async def download_capped(
    session: aiohttp.ClientSession,
    url: str,
    *,
    max_bytes: int,
    allow_private: bool = False,
    timeout: float = 30.0,  # noqa: ASYNC109 - one deadline for all hops and the body
    max_redirects: int = 3,
    accept_types: tuple[str, ...] | None = None,
) -> Downloaded:
    """GET ``url`` into memory, never more than ``max_bytes``.

    ``accept_types`` entries are exact media types (``image/png``) or prefixes (``image/`` or
    ``image/*``); a missing or octet-stream Content-Type is accepted (sniff the bytes afterwards), an
    HTML one never is. Raises DownloadRefused, DownloadTooLarge or DownloadFailed.
    """
    try:
        current = URL(url)
    except (ValueError, TypeError) as exc:
        raise DownloadRefused(f"invalid URL: {exc}") from exc
    try:
        async with asyncio.timeout(timeout):
            for hop in range(max_redirects + 1):
                _check_scheme(current)
                response = await _get(
                    session, current, allow_private=allow_private, connect_timeout=max(1.0, timeout / 3)
                )
                async with response:
                    if response.status not in REDIRECT_STATUSES:
                        return await _read_capped(
                            response, current, max_bytes=max_bytes, accept_types=accept_types
                        )
                    current = _redirect_target(response, current, hop, max_redirects)
    except TimeoutError as exc:
        raise DownloadFailed(f"timed out after {timeout:g} s fetching {_safe_url(current)}") from exc
    except aiohttp.ClientError as exc:
        raise DownloadFailed(f"{type(exc).__name__} fetching {_safe_url(current)}: {exc}") from exc
    raise AssertionError("unreachable")  # pragma: no cover


class HttpDownloader:
    """The :class:`~kontext.services.ports.Downloader` port on :func:`download_capped`."""

    def __init__(self, session: aiohttp.ClientSession, *, allow_private: bool, timeout: float) -> None:
        self.session = session
        self.allow_private = allow_private
        self.timeout = timeout

    async def fetch(self, url: str, *, max_bytes: int, accept_types: tuple[str, ...] | None = None) -> bytes:
        try:
            downloaded = await download_capped(
                self.session,
                url,
                max_bytes=max_bytes,
                allow_private=self.allow_private,
                timeout=self.timeout,
                accept_types=accept_types,
            )
        except DownloadTooLarge as exc:
            raise FetchTooLarge(str(exc), size=exc.size) from exc
        except DownloadError as exc:
            raise FetchError(str(exc)) from exc
        return downloaded.data
