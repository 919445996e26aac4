"""What both SQL stores share: job rows ↔ :class:`JobRecord`, and the statements, written once.

Statements use PostgreSQL's numbered placeholders (``$1``) and ``GREATEST``; :func:`for_sqlite`
turns them into SQLite's equivalents (``?1``, ``MAX``). A job is only changed by the process that
owns it (``owner``), so a process that lost a job to another one cannot touch it any more.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any, Final, Protocol

from kontext.domain.jobs import ACTIVE_STATES, FINAL_STATES, JobRecord, JobState
from kontext.domain.usage import LedgerRow

COLUMNS: Final = JobRecord.column_names()
_BOOL_COLUMNS: Final = frozenset({"prompt_upsampling"})
ACTIVE: Final = sorted(str(s) for s in ACTIVE_STATES)
FINAL: Final = sorted(str(s) for s in FINAL_STATES)


@functools.lru_cache(maxsize=1024)
def for_sqlite(sql: str) -> str:
    """The same statement for SQLite: ``?1`` placeholders and scalar ``MAX`` (translated once per
    distinct statement: the regular expression cost ~7 % of the event loop in a burst)."""
    return re.sub(r"\$(\d+)", r"?\1", sql).replace("GREATEST(", "MAX(")


class Row(Protocol):
    """A database row read by column name (``sqlite3.Row``, ``asyncpg.Record``)."""

    def __getitem__(self, key: str, /) -> Any: ...


def job_from_row(row: Row) -> JobRecord:
    values = {name: row[name] for name in COLUMNS}
    for name in _BOOL_COLUMNS:
        values[name] = bool(values[name])
    return JobRecord(**values)


def _plain(value: Any) -> Any:
    """Enum members as plain strings, booleans as 0/1 (the columns are TEXT and INTEGER)."""
    if isinstance(value, bool):
        return int(value)
    return str(value) if isinstance(value, str) else value


def check_columns(changes: Mapping[str, Any]) -> None:
    for name in changes:
        if name not in COLUMNS or name == "id":
            raise ValueError(f"unknown job column {name!r}")


#: The database's clock in Unix seconds.
NOW_POSTGRES: Final = "EXTRACT(EPOCH FROM clock_timestamp())::double precision"
NOW_SQLITE: Final = "((julianday('now') - 2440587.5) * 86400.0)"


def insert_job(job: JobRecord, owner: str, lease_s: float, now: str) -> tuple[str, list[Any]]:
    """A new job, owned by ``owner`` for ``lease_s`` seconds from now (``now``: the database's clock)."""
    names = [*COLUMNS, "owner", "lease_until"]
    marks = [f"${n}" for n in range(1, len(names) + 1)]
    marks[-1] = f"{now} + {marks[-1]}"
    values = [_plain(getattr(job, name)) for name in COLUMNS]
    return f"INSERT INTO jobs ({', '.join(names)}) VALUES ({', '.join(marks)})", [*values, owner, lease_s]


def update_job(
    job_id: str, changes: Mapping[str, Any], *, owner: str, states: Sequence[JobState] = ()
) -> tuple[str, list[Any]]:
    """``UPDATE`` one job this process owns (and, for a transition, that is in one of ``states``)."""
    check_columns(changes)
    names = list(changes)
    sets = ", ".join(f"{name} = ${n}" for n, name in enumerate(names, start=1))
    first = len(names) + 1
    sql = f"UPDATE jobs SET {sets} WHERE id = ${first} AND owner = ${first + 1}"
    params = [_plain(v) for v in changes.values()] + [job_id, owner]
    if states:
        marks = ", ".join(f"${n}" for n in range(first + 2, first + 2 + len(states)))
        sql += f" AND state IN ({marks})"
        params += [str(s) for s in states]
    return sql, params


def apply(job: JobRecord, changes: Mapping[str, Any]) -> None:
    """Mirror persisted ``changes`` on the in-memory record."""
    for name, value in changes.items():
        setattr(job, name, value)


def transition_changes(to_state: JobState, changes: Mapping[str, Any]) -> dict[str, Any]:
    return {"state": to_state, **changes, "updated_at": time.time()}


def _in(first: int, values: Sequence[str]) -> str:
    return ", ".join(f"${n}" for n in range(first, first + len(values)))


GET_JOB: Final = "SELECT * FROM jobs WHERE id = $1"
RENEW_LEASES: Final = f"UPDATE jobs SET lease_until = $1 WHERE owner = $2 AND state IN ({_in(3, ACTIVE)})"
RELEASE_LEASES: Final = f"UPDATE jobs SET lease_until = 0 WHERE owner = $1 AND state IN ({_in(2, ACTIVE)})"
PRUNE_JOBS: Final = f"DELETE FROM jobs WHERE state IN ({_in(1, FINAL)}) AND updated_at < ${len(FINAL) + 1}"
PRUNE_USAGE: Final = "DELETE FROM usage WHERE day < $1"
FORGET_TOKENS: Final = (
    f"UPDATE jobs SET interaction_token = NULL WHERE state IN ({_in(1, FINAL)}) "
    "AND interaction_token IS NOT NULL"
)

GET_SETTINGS: Final = "SELECT data FROM guild_settings WHERE guild_id = $1"
PUT_SETTINGS: Final = (
    "INSERT INTO guild_settings (guild_id, data, updated_at) VALUES ($1, $2, $3) "
    "ON CONFLICT (guild_id) DO UPDATE SET data = excluded.data, updated_at = excluded.updated_at"
)
DELETE_SETTINGS: Final = "DELETE FROM guild_settings WHERE guild_id = $1"

ADD_USAGE: Final = (
    "INSERT INTO usage (day, guild_id, user_id, count, last_at) VALUES ($1, $2, $3, GREATEST($4, 0), $5) "
    "ON CONFLICT (day, guild_id, user_id) "
    "DO UPDATE SET count = GREATEST(usage.count + $4, 0), last_at = excluded.last_at"
)
USAGE_COUNTS: Final = "SELECT user_id, count FROM usage WHERE day = $1 AND guild_id = $2"
USAGE_LAST: Final = "SELECT user_id, MAX(last_at) AS last_at FROM usage WHERE guild_id = $1 GROUP BY user_id"

ADD_SPEND: Final = (
    "INSERT INTO spend (day, guild_id, user_id, model, jobs, cost) "
    "VALUES ($1, $2, $3, $4, GREATEST($5, 0), GREATEST($6, 0)) "
    "ON CONFLICT (day, guild_id, user_id, model) "
    "DO UPDATE SET jobs = GREATEST(spend.jobs + $5, 0), cost = GREATEST(spend.cost + $6, 0)"
)
#: A server's money from day $2 to day $3 (a month), and per user on one day.
SPEND_GUILD_MONTH: Final = (
    "SELECT COALESCE(SUM(cost), 0) FROM spend WHERE guild_id = $1 AND day >= $2 AND day <= $3"
)
SPEND_USERS_DAY: Final = (
    "SELECT user_id, SUM(cost) FROM spend WHERE day = $1 AND guild_id = $2 GROUP BY user_id"
)
SPEND_ALL_MONTH: Final = "SELECT COALESCE(SUM(cost), 0) FROM spend WHERE day >= $1 AND day <= $2"
SPEND_ROWS: Final = (
    "SELECT day, user_id, model, jobs, cost FROM spend "
    "WHERE guild_id = $1 AND day >= $2 AND day <= $3 ORDER BY day, model, user_id"
)
FAILURE_COUNTS: Final = (
    "SELECT error_code, COUNT(*) FROM jobs WHERE guild_id = $1 AND state = 'failed' AND created_at >= $2 "
    "GROUP BY error_code"
)
PRUNE_SPEND: Final = "DELETE FROM spend WHERE day < $1"


def month_bounds(day: str) -> tuple[str, str]:
    """The first and last possible day text of the month of ``day`` (``2026-12-01``, ``2026-12-31``)."""
    return day[:8] + "01", day[:8] + "31"


def spend_from_row(row: Row) -> LedgerRow:
    return LedgerRow(
        day=str(row["day"]),
        user_id=int(row["user_id"]),
        model=str(row["model"]),
        jobs=int(row["jobs"]),
        cost=int(row["cost"]),
    )


def utc_day(ts: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(ts))
