"""The PostgreSQL store (``DATABASE_URL``): one database shared by every bot process.

Besides the store port, it gives the processes what they must agree on:

* job ownership by lease — claims take expired jobs with ``FOR UPDATE SKIP LOCKED``, so two
  processes never take the same job, and every change is a compare-and-set on state AND owner;
* admission accounting (:class:`~kontext.services.ports.UsageLedger`) — decide-and-count runs in one
  transaction under a per-server advisory lock, so a quota of N admits exactly N across processes;
* the gateway session-start gate — one IDENTIFY per ``max_concurrency`` bucket per 5 s, across
  processes, under a per-bucket advisory lock, timed by the database's clock.

Lease times use the database's clock too, so processes on machines with skewed clocks agree. A lost
connection (PostgreSQL restarted) is retried for ``retry_s`` seconds before an operation fails.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from kontext.adapters.storage import schema, sql
from kontext.domain.jobs import JobRecord, JobState
from kontext.domain.policy import Allowed, Denied
from kontext.domain.usage import LedgerRow
from kontext.services.ports import Decide, UsageCharge, UsageSnapshot

log = logging.getLogger("kontext.storage")
T = TypeVar("T")
Conn = PoolConnectionProxy  # the stubs make it generic; the runtime class is not (no subscript here)

#: Advisory-lock namespaces (the first key of the two-key form).
LOCK_MIGRATE = 7301
LOCK_USAGE = 7302
LOCK_IDENTIFY = 7303
LOCK_SPEND = 7304

#: Errors after which a retry on a fresh connection may succeed.
TRANSIENT: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
)

NOW = sql.NOW_POSTGRES


#: A server's jobs today, a user's jobs today there, the user's last request there (any day); the
#: server's money this month ($4..$5 are the month's first and last day), the user's today there.
_USAGE_NOW = (
    "SELECT"
    " (SELECT COALESCE(SUM(count), 0) FROM usage WHERE day = $1 AND guild_id = $2) AS guild_jobs,"
    " (SELECT COALESCE(SUM(count), 0) FROM usage WHERE day = $1 AND guild_id = $2 AND user_id = $3)"
    " AS user_jobs,"
    " (SELECT MAX(last_at) FROM usage WHERE guild_id = $2 AND user_id = $3) AS last_at,"
    " (SELECT COALESCE(SUM(cost), 0) FROM spend WHERE guild_id = $2 AND day >= $4 AND day <= $5)"
    " AS guild_spent,"
    " (SELECT COALESCE(SUM(cost), 0) FROM spend WHERE day = $1 AND guild_id = $2 AND user_id = $3)"
    " AS user_spent"
)
#: Count one admitted job (PostgreSQL only): its usage row and its money, in one statement.
#: $1 day, $2 guild, $3 user, $4 jobs (+1, or -1 for a refund), $5 last use, $6 model, $7 money.
_COUNT_JOB = (
    f"WITH counted AS ({sql.ADD_USAGE}) "
    "INSERT INTO spend (day, guild_id, user_id, model, jobs, cost) "
    "VALUES ($1, $2, $3, $6, GREATEST($4, 0), GREATEST($7, 0)) "
    "ON CONFLICT (day, guild_id, user_id, model) "
    "DO UPDATE SET jobs = GREATEST(spend.jobs + $4, 0), cost = GREATEST(spend.cost + $7, 0)"
)


async def _usage_now(conn: Conn, guild: int, user_id: int, day: str, *, bot_wide: bool) -> UsageSnapshot:
    """What the policy needs of a server's and a member's usage (the whole bot's month if
    ``bot_wide``; else 0)."""
    row = await conn.fetchrow(_USAGE_NOW, day, guild, user_id, *sql.month_bounds(day))
    assert row is not None
    bot_spent = await conn.fetchval(sql.SPEND_ALL_MONTH, *sql.month_bounds(day)) if bot_wide else 0
    return UsageSnapshot(
        int(row["user_jobs"]),
        int(row["guild_jobs"]),
        float(row["last_at"]) if row["last_at"] is not None else None,
        guild_month_spent=int(row["guild_spent"]),
        user_day_spent=int(row["user_spent"]),
        bot_month_spent=int(bot_spent),
    )


class DatabaseProblem(Exception):
    """``DATABASE_URL`` cannot be used; the message says why in one line, without the URL."""


def _problem(exc: BaseException) -> DatabaseProblem:
    if isinstance(exc, asyncpg.InvalidPasswordError | asyncpg.InvalidAuthorizationSpecificationError):
        return DatabaseProblem("PostgreSQL refused the user or password")
    if isinstance(exc, asyncpg.InvalidCatalogNameError):
        return DatabaseProblem("the database does not exist on that server")
    if isinstance(exc, TimeoutError):
        return DatabaseProblem("PostgreSQL did not answer in time")
    if isinstance(exc, OSError | asyncpg.PostgresConnectionError | asyncpg.CannotConnectNowError):
        return DatabaseProblem(f"cannot connect to PostgreSQL ({type(exc).__name__})")
    return DatabaseProblem(f"PostgreSQL error ({type(exc).__name__})")


async def check_database(dsn: str, timeout: float = 10.0) -> None:  # noqa: ASYNC109 - a connect timeout
    """Connect once and run a query; :class:`DatabaseProblem` when that fails."""
    try:
        conn = await asyncpg.connect(dsn, timeout=timeout)
        try:
            await conn.fetchval("SELECT 1")
        finally:
            await conn.close()
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise _problem(exc) from None


def _lock_key(value: int) -> int:
    """A 32-bit advisory-lock key for a 64-bit id (collisions only serialise a little more)."""
    return (value ^ (value >> 32)) & 0x7FFFFFFF


class PostgresStore:
    """The store, ledger and session-start gate on a PostgreSQL connection pool."""

    shared = True

    def __init__(
        self,
        dsn: str,
        *,
        owner: str,
        lease_s: float = 30.0,
        pool_size: int = 10,
        retry_s: float = 30.0,
    ) -> None:
        self.dsn = dsn
        self.owner = owner
        self.lease_s = lease_s
        self.pool_size = pool_size
        self.retry_s = retry_s
        self._pool: asyncpg.Pool | None = None

    # --- lifecycle and retries -----------------------------------------------------------------

    async def open(self) -> None:
        """Connect and migrate; :class:`DatabaseProblem` when the server cannot be used."""
        try:
            self._pool = await asyncpg.create_pool(
                self.dsn,
                min_size=1,
                max_size=self.pool_size,
                command_timeout=60,
                timeout=10,
                server_settings={"timezone": "UTC"},
            )
            await self._migrate()
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            await self.close()
            raise _problem(exc) from None

    async def _migrate(self) -> None:
        async with self._connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1, 0)", LOCK_MIGRATE)
            await conn.execute("CREATE TABLE IF NOT EXISTS kontext_schema (version INTEGER NOT NULL)")
            current = await conn.fetchval("SELECT max(version) FROM kontext_schema") or 0
            migrations = schema.pending(int(current), "the PostgreSQL database")
            for migration in migrations:
                for statement in migration.statements("postgres"):
                    await conn.execute(statement)
                await conn.execute("INSERT INTO kontext_schema (version) VALUES ($1)", migration.version)
        if migrations:
            log.info("PostgreSQL schema migrated from %d to %d", current, schema.LATEST)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[Conn]:
        if self._pool is None:
            raise RuntimeError("store is not open")
        async with self._pool.acquire() as conn:
            yield conn

    async def _retrying(self, what: str, operation: Callable[[Conn], Awaitable[T]]) -> T:
        """Run ``operation`` on a pooled connection; retry on a lost connection for ``retry_s``."""
        deadline = time.monotonic() + self.retry_s
        delay = 0.2
        while True:
            try:
                async with self._connection() as conn:
                    return await operation(conn)
            except TRANSIENT as exc:
                if time.monotonic() + delay > deadline:
                    raise
                log.warning(
                    "database unavailable during %s (%s); retrying in %.1f s", what, type(exc).__name__, delay
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _execute(self, what: str, statement: str, *params: Any) -> int:
        async def run(conn: Conn) -> int:
            status: str = await conn.execute(statement, *params)
            return int(status.rsplit(" ", 1)[-1]) if status[-1:].isdigit() else 0

        return await self._retrying(what, run)

    async def _fetch(self, what: str, statement: str, *params: Any) -> list[asyncpg.Record]:
        async def run(conn: Conn) -> list[asyncpg.Record]:
            rows: list[asyncpg.Record] = await conn.fetch(statement, *params)
            return rows

        return await self._retrying(what, run)

    # --- jobs ---------------------------------------------------------------------------------

    async def insert_job(self, job: JobRecord) -> None:
        statement, params = sql.insert_job(job, self.owner, float(self.lease_s), NOW)
        await self._execute("insert job", statement, *params)

    async def get_job(self, job_id: str) -> JobRecord | None:
        rows = await self._fetch("get job", sql.GET_JOB, job_id)
        return sql.job_from_row(rows[0]) if rows else None

    async def update_job(self, job: JobRecord, **changes: Any) -> bool:
        """Persist ``changes`` (and mirror them on ``job``); False when this process no longer owns it."""
        changes.setdefault("updated_at", time.time())
        statement, params = sql.update_job(job.id, changes, owner=self.owner)
        if not await self._execute("update job", statement, *params):
            return False
        sql.apply(job, changes)
        return True

    async def transition(
        self, job: JobRecord, from_states: Iterable[JobState], to_state: JobState, **changes: Any
    ) -> bool:
        """Compare-and-set on state and owner. A reply lost with the connection is resolved by reading
        the row back: the transition happened when the job is now ours in ``to_state``."""
        changes = sql.transition_changes(to_state, changes)
        statement, params = sql.update_job(job.id, changes, owner=self.owner, states=list(from_states))
        attempt = 0

        async def run(conn: Conn) -> bool:
            nonlocal attempt
            attempt += 1
            status: str = await conn.execute(statement, *params)
            if status.endswith(" 1"):
                return True
            if attempt == 1:
                return False
            row = await conn.fetchrow("SELECT state, owner FROM jobs WHERE id = $1", job.id)
            return row is not None and row["state"] == to_state and row["owner"] == self.owner

        if not await self._retrying("job transition", run):
            return False
        sql.apply(job, changes)
        return True

    async def claim_jobs(self, *, everything: bool = False, limit: int = 1000) -> list[JobRecord]:
        """Take over unfinished jobs whose lease ran out (``everything``: all of them), skipping rows
        another process is claiming at this very moment."""
        expired = "" if everything else f" AND lease_until < {NOW}"
        statement = (
            f"UPDATE jobs SET owner = $1, lease_until = {NOW} + $2 WHERE id IN ("
            f"SELECT id FROM jobs WHERE state = ANY($3::text[]){expired} "
            "ORDER BY created_at LIMIT $4 FOR UPDATE SKIP LOCKED) RETURNING *"
        )
        rows = await self._fetch("claim jobs", statement, self.owner, float(self.lease_s), sql.ACTIVE, limit)
        return sorted((sql.job_from_row(row) for row in rows), key=lambda job: job.created_at)

    async def renew_leases(self) -> int:
        statement = f"UPDATE jobs SET lease_until = {NOW} + $1 WHERE owner = $2 AND state = ANY($3::text[])"
        return await self._execute("renew leases", statement, float(self.lease_s), self.owner, sql.ACTIVE)

    async def release_leases(self) -> int:
        statement = "UPDATE jobs SET lease_until = 0 WHERE owner = $1 AND state = ANY($2::text[])"
        return await self._execute("release leases", statement, self.owner, sql.ACTIVE)

    async def forget_tokens(self) -> int:
        """Clear the interaction token of every finished job (a credential no longer needed)."""
        return await self._execute("forget tokens", sql.FORGET_TOKENS, *sql.FINAL)

    async def prune(self, before: float, spend_before: float | None = None) -> tuple[int, int]:
        jobs = await self._execute("prune jobs", sql.PRUNE_JOBS, *sql.FINAL, before)
        usage = await self._execute("prune usage", sql.PRUNE_USAGE, sql.utc_day(before))
        spend_day = sql.utc_day(spend_before or before)
        usage += await self._execute("prune spend", sql.PRUNE_SPEND, spend_day)
        return jobs, usage

    # --- guild settings and usage rows ----------------------------------------------------------

    async def get_guild_settings(self, guild_id: int) -> dict[str, Any] | None:
        rows = await self._fetch("get settings", sql.GET_SETTINGS, guild_id)
        data: dict[str, Any] | None = json.loads(rows[0]["data"]) if rows else None
        return data

    async def put_guild_settings(self, guild_id: int, data: dict[str, Any]) -> None:
        text = json.dumps(data, ensure_ascii=False, sort_keys=True)
        await self._execute("put settings", sql.PUT_SETTINGS, guild_id, text, time.time())

    async def delete_guild_settings(self, guild_id: int) -> None:
        await self._execute("delete settings", sql.DELETE_SETTINGS, guild_id)

    async def add_usage(self, day: str, guild_id: int, user_id: int, at: float, count: int = 1) -> None:
        await self._execute("add usage", sql.ADD_USAGE, day, guild_id, user_id, count, at)

    async def usage_snapshot(self, day: str, guild_id: int) -> tuple[dict[int, int], dict[int, float]]:
        counts = await self._fetch("usage counts", sql.USAGE_COUNTS, day, guild_id)
        last = await self._fetch("usage last", sql.USAGE_LAST, guild_id)
        return {int(r[0]): int(r[1]) for r in counts}, {int(r[0]): float(r[1]) for r in last}

    # --- the usage ledger (several processes) ----------------------------------------------------

    async def admit(
        self,
        guild: int,
        user_id: int,
        day: str,
        now: float,
        decide: Decide,
        *,
        limited: bool = True,
        bot_wide: bool = False,
    ) -> tuple[Allowed | Denied, UsageCharge | None]:
        """Decide and count in one transaction, serialised per server by an advisory lock (and for
        the whole bot by a second one when the operator's budget applies: ``bot_wide``).

        A server without quotas, cooldown or budgets (``limited=False``, not ``bot_wide``) needs no
        usage to decide: its request is counted in one statement, with no lock and no transaction.
        """
        if not limited and not bot_wide:
            decision = decide(UsageSnapshot(0, 0, None))
            if isinstance(decision, Denied):
                return decision, None
            charge = UsageCharge(guild, day, user_id, None, decision.model, decision.cost, now)
            await self._execute("count usage", *self._count(charge, 1))
            return decision, charge

        async def run(conn: Conn) -> tuple[Allowed | Denied, UsageCharge | None]:
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1, $2)", LOCK_USAGE, _lock_key(guild))
                if bot_wide:  # always after the server's lock: one order, no deadlock
                    await conn.execute("SELECT pg_advisory_xact_lock($1, 0)", LOCK_SPEND)
                usage = await _usage_now(conn, guild, user_id, day, bot_wide=bot_wide)
                decision = decide(usage)
                if isinstance(decision, Denied):
                    return decision, None
                charge = UsageCharge(
                    guild, day, user_id, usage.user_last_job_at, decision.model, decision.cost, now
                )
                await conn.execute(*self._count(charge, 1))
                return decision, charge

        return await self._retrying("admission", run)

    @staticmethod
    def _count(charge: UsageCharge, sign: int) -> tuple[str, str, int, int, int, float, str, int]:
        """The statement and parameters that count (``sign`` 1) or refund (-1) one admission."""
        at = charge.at if sign > 0 else (charge.previous_last or 0.0)
        return (
            _COUNT_JOB,
            charge.day,
            charge.guild,
            charge.user_id,
            sign,
            at,
            charge.model,
            sign * charge.cost,
        )

    async def refund(self, charge: UsageCharge) -> None:
        await self._execute("refund usage", *self._count(charge, -1))

    async def release(self, guild: int, day: str, user_id: int, model: str, cost: int) -> None:
        await self.add_spend(day, guild, user_id, model, jobs=0, cost=-cost)

    async def counts(self, guild: int, day: str) -> dict[int, int]:
        return (await self.usage_snapshot(day, guild))[0]

    async def peek(self, guild: int, user_id: int, day: str) -> UsageSnapshot:
        async def run(conn: Conn) -> UsageSnapshot:
            return await _usage_now(conn, guild, user_id, day, bot_wide=True)

        return await self._retrying("usage now", run)

    async def flush(self) -> None:
        return None  # every count is written before admit returns

    # --- the spending ledger ----------------------------------------------------------------------

    async def add_spend(
        self, day: str, guild_id: int, user_id: int, model: str, *, jobs: int, cost: int
    ) -> None:
        await self._execute("add spend", sql.ADD_SPEND, day, guild_id, user_id, model, jobs, cost)

    async def spend_snapshot(self, day: str, guild_id: int) -> tuple[int, dict[int, int]]:
        month = await self._fetch("spend month", sql.SPEND_GUILD_MONTH, guild_id, *sql.month_bounds(day))
        users = await self._fetch("spend users", sql.SPEND_USERS_DAY, day, guild_id)
        return int(month[0][0]), {int(r[0]): int(r[1]) for r in users}

    async def spend_month_total(self, day: str) -> int:
        rows = await self._fetch("spend total", sql.SPEND_ALL_MONTH, *sql.month_bounds(day))
        return int(rows[0][0])

    async def spend_rows(self, guild_id: int, first_day: str, last_day: str) -> list[LedgerRow]:
        rows = await self._fetch("spend rows", sql.SPEND_ROWS, guild_id, first_day, last_day)
        return [sql.spend_from_row(row) for row in rows]

    async def failure_counts(self, guild_id: int, since: float) -> dict[str, int]:
        rows = await self._fetch("failure counts", sql.FAILURE_COUNTS, guild_id, since)
        return {str(r[0] or "unknown"): int(r[1]) for r in rows}

    # --- the session-start gate ------------------------------------------------------------------

    async def wait_turn(self, bucket: int, spacing: float) -> None:
        """Hold the bucket's lock until ``spacing`` s have passed since its last IDENTIFY (any process)."""

        async def run(conn: Conn) -> None:
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1, $2)", LOCK_IDENTIFY, bucket)
                wait = await conn.fetchval(
                    f"SELECT COALESCE(MAX(last_at), 0) + $2 - {NOW} FROM gateway_identify WHERE bucket = $1",
                    bucket,
                    float(spacing),
                )
                if wait is not None and wait > 0:
                    log.info("waiting %.1f s for the session-start slot of bucket %d", wait, bucket)
                    await asyncio.sleep(float(wait))
                await conn.execute(
                    f"INSERT INTO gateway_identify (bucket, last_at) VALUES ($1, {NOW}) "
                    "ON CONFLICT (bucket) DO UPDATE SET last_at = excluded.last_at",
                    bucket,
                )

        await self._retrying("session start", run)
