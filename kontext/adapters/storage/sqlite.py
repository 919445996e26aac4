"""The SQLite store (one file under DATA_DIR): the zero-configuration adapter of the store port.

All SQLite work runs on one dedicated thread, so the event loop never blocks on disk I/O and the
connection is only ever used from the thread that made it. One bot process owns the file, so at
start it claims every unfinished job (there is nobody else to share them with).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from kontext.adapters.storage import schema, sql

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no process lock, one bot per data dir is on the operator
    fcntl = None  # type: ignore[assignment]
from kontext.domain.jobs import JobRecord, JobState
from kontext.domain.usage import LedgerRow

log = logging.getLogger("kontext.storage")
T = TypeVar("T")


def _q(statement: str) -> str:
    return sql.for_sqlite(statement)


class DataDirInUse(RuntimeError):
    """Another bot process already uses this SQLite file."""


class SqliteStore:
    """The :class:`~kontext.services.ports.Store` port on one SQLite file (WAL mode).

    The file belongs to one process: a second bot process on the same file is refused at open (a lock
    next to it), because SQLite cannot coordinate job leases between processes — use PostgreSQL.
    """

    shared = False

    def __init__(self, path: Path | str, *, owner: str = "local", lease_s: float = 30.0) -> None:
        self.path = Path(path)
        self.owner = owner
        self.lease_s = lease_s
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kontext-sqlite")
        self._conn: sqlite3.Connection | None = None
        self._closed = False
        self._lock_file: int | None = None

    async def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def run() -> T:
            if self._conn is None:
                raise RuntimeError("store is not open")
            with self._conn:
                return fn(self._conn)

        return await asyncio.get_running_loop().run_in_executor(self._executor, run)

    async def _execute(self, statement: str, params: Iterable[Any] = ()) -> int:
        text, values = _q(statement), list(params)
        return await self._call(lambda c: c.execute(text, values).rowcount)

    async def _fetch(self, statement: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        text, values = _q(statement), list(params)
        return await self._call(lambda c: c.execute(text, values).fetchall())

    # --- lifecycle ----------------------------------------------------------------------------

    def _lock(self) -> None:
        """Hold a POSIX lock on ``<file>.lock`` while open (stores inside one process share it)."""
        if fcntl is None:
            return
        fd = os.open(self.path.with_name(self.path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise DataDirInUse(
                f"{self.path} is used by another running Kontext process; run one process per DATA_DIR, "
                "or set DATABASE_URL (PostgreSQL) to run several"
            ) from None
        self._lock_file = fd

    def _connect(self) -> int:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock()
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=5000")
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        try:
            for migration in schema.pending(version, f"database {self.path}"):
                conn.execute("BEGIN IMMEDIATE")
                try:
                    for statement in migration.statements("sqlite"):
                        conn.execute(statement)
                    conn.execute(f"PRAGMA user_version = {migration.version}")
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return version

    async def open(self) -> None:
        before = await asyncio.get_running_loop().run_in_executor(self._executor, self._connect)
        if before < schema.LATEST:
            log.info("database %s migrated from schema %d to %d", self.path, before, schema.LATEST)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True

        def shut() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            if self._lock_file is not None:
                os.close(self._lock_file)
                self._lock_file = None

        await asyncio.get_running_loop().run_in_executor(self._executor, shut)
        self._executor.shutdown(wait=True)

    # --- jobs ---------------------------------------------------------------------------------

    async def insert_job(self, job: JobRecord) -> None:
        statement, params = sql.insert_job(job, self.owner, self.lease_s, sql.NOW_SQLITE)
        await self._execute(statement, params)

    async def get_job(self, job_id: str) -> JobRecord | None:
        rows = await self._fetch(sql.GET_JOB, (job_id,))
        return sql.job_from_row(rows[0]) if rows else None

    async def update_job(self, job: JobRecord, **changes: Any) -> bool:
        """Persist ``changes`` (and mirror them on ``job``); False when this process no longer owns it."""
        changes.setdefault("updated_at", time.time())
        statement, params = sql.update_job(job.id, changes, owner=self.owner)
        if not await self._execute(statement, params):
            return False
        sql.apply(job, changes)
        return True

    async def transition(
        self, job: JobRecord, from_states: Iterable[JobState], to_state: JobState, **changes: Any
    ) -> bool:
        """Compare-and-set; False (nothing changed) unless the job is ours and in ``from_states``."""
        changes = sql.transition_changes(to_state, changes)
        statement, params = sql.update_job(job.id, changes, owner=self.owner, states=list(from_states))
        if not await self._execute(statement, params):
            return False
        sql.apply(job, changes)
        return True

    async def claim_jobs(self, *, everything: bool = False, limit: int = 1000) -> list[JobRecord]:
        """Take over unfinished jobs whose lease ran out (``everything``: all of them) and return them."""
        now = time.time()  # one process: its own clock is the only one
        marks = ", ".join("?" for _ in sql.ACTIVE)
        expired = "" if everything else " AND lease_until < ?"

        def claim(conn: sqlite3.Connection) -> list[sqlite3.Row]:
            params: list[Any] = [*sql.ACTIVE, *([] if everything else [now]), limit]
            conn.execute("BEGIN IMMEDIATE")  # no other connection claims between the SELECT and the UPDATE
            try:
                ids = [
                    row["id"]
                    for row in conn.execute(
                        f"SELECT id FROM jobs WHERE state IN ({marks}){expired} ORDER BY created_at LIMIT ?",
                        params,
                    )
                ]
                id_marks = ", ".join("?" for _ in ids)
                if ids:
                    conn.execute(
                        f"UPDATE jobs SET owner = ?, lease_until = ? WHERE id IN ({id_marks})",
                        [self.owner, now + self.lease_s, *ids],
                    )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            if not ids:
                return []
            return conn.execute(
                f"SELECT * FROM jobs WHERE id IN ({id_marks}) ORDER BY created_at", ids
            ).fetchall()

        return [sql.job_from_row(row) for row in await self._call(claim)]

    async def renew_leases(self) -> int:
        return await self._execute(sql.RENEW_LEASES, [time.time() + self.lease_s, self.owner, *sql.ACTIVE])

    async def release_leases(self) -> int:
        return await self._execute(sql.RELEASE_LEASES, [self.owner, *sql.ACTIVE])

    async def forget_tokens(self) -> int:
        """Clear the interaction token of every finished job (a credential no longer needed)."""
        return await self._execute(sql.FORGET_TOKENS, sql.FINAL)

    async def prune(self, before: float, spend_before: float | None = None) -> tuple[int, int]:
        """Delete finished jobs and usage rows older than ``before`` (Unix s), and spending rows older
        than ``spend_before`` (default: ``before``); returns the jobs and the other rows removed."""
        day = sql.utc_day(before)
        jobs = await self._execute(sql.PRUNE_JOBS, [*sql.FINAL, before])
        usage = await self._execute(sql.PRUNE_USAGE, [day])
        usage += await self._execute(sql.PRUNE_SPEND, [sql.utc_day(spend_before or before)])
        return jobs, usage

    # --- guild settings and usage -------------------------------------------------------------

    async def get_guild_settings(self, guild_id: int) -> dict[str, Any] | None:
        rows = await self._fetch(sql.GET_SETTINGS, (guild_id,))
        data: dict[str, Any] | None = json.loads(rows[0]["data"]) if rows else None
        return data

    async def put_guild_settings(self, guild_id: int, data: dict[str, Any]) -> None:
        text = json.dumps(data, ensure_ascii=False, sort_keys=True)
        await self._execute(sql.PUT_SETTINGS, (guild_id, text, time.time()))

    async def delete_guild_settings(self, guild_id: int) -> None:
        await self._execute(sql.DELETE_SETTINGS, (guild_id,))

    async def add_usage(self, day: str, guild_id: int, user_id: int, at: float, count: int = 1) -> None:
        """Add ``count`` (negative for a refund) to a user's day; ``at`` becomes their last use."""
        await self._execute(sql.ADD_USAGE, (day, guild_id, user_id, count, at))

    async def usage_snapshot(self, day: str, guild_id: int) -> tuple[dict[int, int], dict[int, float]]:
        """A guild's per-user counts for ``day`` and every user's last use (any day)."""
        counts = await self._fetch(sql.USAGE_COUNTS, (day, guild_id))
        last = await self._fetch(sql.USAGE_LAST, (guild_id,))
        return {int(r[0]): int(r[1]) for r in counts}, {int(r[0]): float(r[1]) for r in last}

    # --- the spending ledger ----------------------------------------------------------------------

    async def add_spend(
        self, day: str, guild_id: int, user_id: int, model: str, *, jobs: int, cost: int
    ) -> None:
        await self._execute(sql.ADD_SPEND, (day, guild_id, user_id, model, jobs, cost))

    async def spend_snapshot(self, day: str, guild_id: int) -> tuple[int, dict[int, int]]:
        first, last = sql.month_bounds(day)
        month = await self._fetch(sql.SPEND_GUILD_MONTH, (guild_id, first, last))
        users = await self._fetch(sql.SPEND_USERS_DAY, (day, guild_id))
        return int(month[0][0]), {int(r[0]): int(r[1]) for r in users}

    async def spend_month_total(self, day: str) -> int:
        rows = await self._fetch(sql.SPEND_ALL_MONTH, sql.month_bounds(day))
        return int(rows[0][0])

    async def spend_rows(self, guild_id: int, first_day: str, last_day: str) -> list[LedgerRow]:
        rows = await self._fetch(sql.SPEND_ROWS, (guild_id, first_day, last_day))
        return [sql.spend_from_row(row) for row in rows]

    async def failure_counts(self, guild_id: int, since: float) -> dict[str, int]:
        rows = await self._fetch(sql.FAILURE_COUNTS, (guild_id, since))
        return {str(r[0] or "unknown"): int(r[1]) for r in rows}
