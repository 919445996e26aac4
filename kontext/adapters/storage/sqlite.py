"""The SQLite store (one file under DATA_DIR): the default adapter of the store port.

All SQLite work runs on one dedicated thread, so the event loop never blocks on disk I/O and the
connection is only ever used from the thread that made it. The schema is versioned with
``PRAGMA user_version``; :data:`MIGRATIONS` are applied in order at open.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from kontext.domain.jobs import ACTIVE_STATES, FINAL_STATES, JobRecord, JobState

log = logging.getLogger("kontext.adapters.storage.sqlite")
T = TypeVar("T")

MIGRATIONS: list[str] = [
    # 1: jobs
    """
    CREATE TABLE jobs (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        state TEXT NOT NULL,
        prompt TEXT NOT NULL,
        model TEXT NOT NULL,
        size TEXT NOT NULL,
        response_format TEXT NOT NULL,
        safety_tolerance INTEGER NOT NULL,
        prompt_upsampling INTEGER NOT NULL,
        user_id INTEGER NOT NULL,
        user_name TEXT NOT NULL DEFAULT '',
        channel_id INTEGER NOT NULL,
        guild_id INTEGER,
        locale TEXT NOT NULL,
        application_id INTEGER,
        interaction_id INTEGER,
        interaction_token TEXT,
        token_issued_at REAL,
        status_message_id INTEGER,
        attachment_size_limit INTEGER NOT NULL,
        input_url TEXT,
        input_filename TEXT,
        parent_job_id TEXT,
        host_name TEXT,
        hosted_url TEXT,
        host_handle TEXT,
        task_id TEXT UNIQUE,
        result_url TEXT,
        result_attachment_url TEXT,
        result_message_id INTEGER,
        delivery TEXT,
        error_code TEXT,
        error_detail TEXT,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        submitted_at REAL,
        finished_at REAL
    );
    CREATE INDEX jobs_state ON jobs(state);
    CREATE INDEX jobs_user ON jobs(user_id, created_at);
    """,
    # 2: per-guild settings (JSON document) and daily usage counters
    """
    CREATE TABLE guild_settings (
        guild_id INTEGER PRIMARY KEY,
        data TEXT NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE TABLE usage (
        day TEXT NOT NULL,
        guild_id INTEGER NOT NULL,
        user_id INTEGER NOT NULL,
        count INTEGER NOT NULL,
        last_at REAL NOT NULL,
        PRIMARY KEY (day, guild_id, user_id)
    );
    """,
]

_COLUMNS = JobRecord.column_names()
_BOOL_COLUMNS = {"prompt_upsampling"}


class SqliteStore:
    """The :class:`~kontext.services.ports.Store` port on one SQLite file (WAL mode).

    Every call runs on one dedicated thread, so the connection is only used where it was made."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kontext-sqlite")
        self._conn: sqlite3.Connection | None = None

    async def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        loop = asyncio.get_running_loop()

        def run() -> T:
            if self._conn is None:
                raise RuntimeError("store is not open")
            with self._conn:
                return fn(self._conn)

        return await loop.run_in_executor(self._executor, run)

    async def open(self) -> None:
        def connect() -> int:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=5000")
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            if version > len(MIGRATIONS):
                conn.close()
                raise RuntimeError(
                    f"database {self.path} has schema version {version}, newer than this bot "
                    f"({len(MIGRATIONS)}); upgrade the bot"
                )
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                conn.execute("BEGIN IMMEDIATE")
                try:
                    for statement in script.split(";"):
                        if statement.strip():
                            conn.execute(statement)
                    conn.execute(f"PRAGMA user_version = {number}")
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    conn.close()
                    raise
            self._conn = conn
            return version

        loop = asyncio.get_running_loop()
        before = await loop.run_in_executor(self._executor, connect)
        if before < len(MIGRATIONS):
            log.info("database %s migrated from schema %d to %d", self.path, before, len(MIGRATIONS))

    async def close(self) -> None:
        def shut() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, shut)
        self._executor.shutdown(wait=True)

    # --- jobs ---------------------------------------------------------------------------------

    @staticmethod
    def _row_to_job(row: sqlite3.Row) -> JobRecord:
        values = {name: row[name] for name in _COLUMNS}
        for name in _BOOL_COLUMNS:
            values[name] = bool(values[name])
        return JobRecord(**values)

    async def insert_job(self, job: JobRecord) -> None:
        values = [getattr(job, name) for name in _COLUMNS]
        sql = f"INSERT INTO jobs ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' for _ in _COLUMNS)})"
        await self._call(lambda c: c.execute(sql, values))

    async def get_job(self, job_id: str) -> JobRecord | None:
        row = await self._call(lambda c: c.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone())
        return self._row_to_job(row) if row else None

    async def update_job(self, job: JobRecord, **changes: Any) -> None:
        """Persist ``changes`` and apply them to ``job`` in memory."""
        changes.setdefault("updated_at", time.time())
        for name in changes:
            if name not in _COLUMNS or name == "id":
                raise ValueError(f"unknown job column {name!r}")
        sql = f"UPDATE jobs SET {', '.join(f'{k} = ?' for k in changes)} WHERE id = ?"
        params = [*changes.values(), job.id]
        await self._call(lambda c: c.execute(sql, params))
        for name, value in changes.items():
            setattr(job, name, value)

    async def transition(
        self, job: JobRecord, from_states: Iterable[JobState], to_state: JobState, **changes: Any
    ) -> bool:
        """Compare-and-set the state; False (and nothing changed) if the job is not in ``from_states``."""
        allowed = list(from_states)
        changes = {"state": to_state, **changes, "updated_at": time.time()}
        for name in changes:
            if name not in _COLUMNS or name == "id":
                raise ValueError(f"unknown job column {name!r}")
        sql = (
            f"UPDATE jobs SET {', '.join(f'{k} = ?' for k in changes)} "
            f"WHERE id = ? AND state IN ({', '.join('?' for _ in allowed)})"
        )
        params = [*changes.values(), job.id, *allowed]
        count = await self._call(lambda c: c.execute(sql, params).rowcount)
        if count:
            for name, value in changes.items():
                setattr(job, name, value)
        return bool(count)

    async def active_jobs(self) -> list[JobRecord]:
        states = sorted(ACTIVE_STATES)
        sql = f"SELECT * FROM jobs WHERE state IN ({', '.join('?' for _ in states)}) ORDER BY created_at"
        rows = await self._call(lambda c: c.execute(sql, states).fetchall())
        return [self._row_to_job(r) for r in rows]

    async def prune(self, before: float) -> tuple[int, int]:
        """Delete finished jobs and usage rows older than ``before`` (Unix s); returns both counts."""
        day = time.strftime("%Y-%m-%d", time.gmtime(before))
        finals = sorted(FINAL_STATES)
        marks = ", ".join("?" for _ in finals)

        def run(c: sqlite3.Connection) -> tuple[int, int]:
            jobs = c.execute(
                f"DELETE FROM jobs WHERE state IN ({marks}) AND updated_at < ?", (*finals, before)
            ).rowcount
            usage = c.execute("DELETE FROM usage WHERE day < ?", (day,)).rowcount
            return jobs, usage

        return await self._call(run)

    # --- guild settings and usage -------------------------------------------------------------

    async def get_guild_settings(self, guild_id: int) -> dict[str, Any] | None:
        row = await self._call(
            lambda c: c.execute("SELECT data FROM guild_settings WHERE guild_id = ?", (guild_id,)).fetchone()
        )
        return json.loads(row[0]) if row else None

    async def put_guild_settings(self, guild_id: int, data: dict[str, Any]) -> None:
        text = json.dumps(data, ensure_ascii=False, sort_keys=True)
        await self._call(
            lambda c: c.execute(
                "INSERT INTO guild_settings (guild_id, data, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT(guild_id) DO UPDATE SET data = excluded.data, updated_at = excluded.updated_at",
                (guild_id, text, time.time()),
            )
        )

    async def delete_guild_settings(self, guild_id: int) -> None:
        await self._call(lambda c: c.execute("DELETE FROM guild_settings WHERE guild_id = ?", (guild_id,)))

    async def add_usage(self, day: str, guild_id: int, user_id: int, at: float, count: int = 1) -> None:
        """Add ``count`` (negative for a refund) to a user's day; ``at`` becomes their last use."""
        await self._call(
            lambda c: c.execute(
                "INSERT INTO usage (day, guild_id, user_id, count, last_at) VALUES (?, ?, ?, MAX(?, 0), ?) "
                "ON CONFLICT(day, guild_id, user_id) "
                "DO UPDATE SET count = MAX(count + ?, 0), last_at = excluded.last_at",
                (day, guild_id, user_id, count, at, count),
            )
        )

    async def usage_snapshot(self, day: str, guild_id: int) -> tuple[dict[int, int], dict[int, float]]:
        """A guild's per-user counts for ``day`` and every user's last use (any day)."""
        counts = await self._call(
            lambda c: c.execute(
                "SELECT user_id, count FROM usage WHERE day = ? AND guild_id = ?", (day, guild_id)
            ).fetchall()
        )
        last = await self._call(
            lambda c: c.execute(
                "SELECT user_id, MAX(last_at) FROM usage WHERE guild_id = ? GROUP BY user_id", (guild_id,)
            ).fetchall()
        )
        return {int(r[0]): int(r[1]) for r in counts}, {int(r[0]): float(r[1]) for r in last}
