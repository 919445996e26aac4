"""Move a bot from SQLite to PostgreSQL: copy jobs, settings, usage and spending into the new database.

``python bot.py --copy-to-postgres`` reads ``DATA_DIR``'s SQLite file and writes to ``DATABASE_URL``
(both schemas are brought to the latest version first). Rows already in PostgreSQL are kept, so the
copy can be re-run. Unfinished jobs arrive without an owner: the first bot process to start on
PostgreSQL takes them over and finishes them.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from kontext.adapters.storage.postgres import PostgresStore
from kontext.adapters.storage.sqlite import SqliteStore

#: (table, its key columns) in copy order.
TABLES = (
    ("jobs", ("id",)),
    ("guild_settings", ("guild_id",)),
    ("usage", ("day", "guild_id", "user_id")),
    ("spend", ("day", "guild_id", "user_id", "model")),
)


@dataclass(frozen=True)
class Copied:
    """How many rows of each table were copied (rows already there are not counted)."""

    jobs: int
    settings: int
    usage: int
    spend: int

    def __str__(self) -> str:
        return (
            f"{self.jobs} job(s), {self.settings} server setting(s), {self.usage} usage row(s), "
            f"{self.spend} spending row(s)"
        )


def _read(path: Path, table: str) -> tuple[list[str], list[tuple[object, ...]]]:
    conn = sqlite3.connect(path)
    try:
        cursor = conn.execute(f"SELECT * FROM {table}")  # table names are our own constants
        columns = [d[0] for d in cursor.description]
        return columns, [tuple(row) for row in cursor.fetchall()]
    finally:
        conn.close()


async def copy_sqlite_to_postgres(sqlite_path: Path, dsn: str) -> Copied:
    """Copy everything; both databases are migrated to the latest schema first."""
    source = SqliteStore(sqlite_path, owner="copy")
    await source.open()  # migrates the file; refuses a file another bot process holds
    await source.close()
    target = PostgresStore(dsn, owner="copy")
    await target.open()  # migrates PostgreSQL
    await target.close()
    counts: list[int] = []
    conn = await asyncpg.connect(dsn)
    try:
        for table, keys in TABLES:
            columns, rows = _read(sqlite_path, table)
            if table == "jobs":  # unowned and expired: the first process on PostgreSQL claims them
                rows = [_unowned(columns, row) for row in rows]
            marks = ", ".join(f"${n}" for n in range(1, len(columns) + 1))
            statement = (
                f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks}) "
                f"ON CONFLICT ({', '.join(keys)}) DO NOTHING"
            )
            async with conn.transaction():
                before = await conn.fetchval(f"SELECT count(*) FROM {table}")
                await conn.executemany(statement, rows)
                after = await conn.fetchval(f"SELECT count(*) FROM {table}")
            counts.append(int(after) - int(before))
    finally:
        await conn.close()
    return Copied(*counts)


def _unowned(columns: list[str], row: tuple[object, ...]) -> tuple[object, ...]:
    values = dict(zip(columns, row, strict=True))
    values["owner"], values["lease_until"] = None, 0.0
    return tuple(values[c] for c in columns)
