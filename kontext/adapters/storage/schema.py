"""The schema of both engines, versioned, in one place.

Each migration is written once in a neutral SQL (``INTEGER``, ``REAL``, ``TEXT``) and translated for
PostgreSQL (64-bit ``BIGINT`` for Discord ids, ``DOUBLE PRECISION`` for times). SQLite records the
version in ``PRAGMA user_version``, PostgreSQL in the ``kontext_schema`` table. A database with a
NEWER version than this code knows is refused: an older bot must not write to a newer schema.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True)
class Migration:
    version: int
    purpose: str
    sql: str

    def statements(self, engine: str) -> list[str]:
        """The migration's statements for ``engine`` (``sqlite`` or ``postgres``)."""
        sql = self.sql if engine == "sqlite" else _for_postgres(self.sql)
        return [statement.strip() for statement in sql.split(";") if statement.strip()]


def _for_postgres(sql: str) -> str:
    sql = re.sub(r"\bINTEGER\b", "BIGINT", sql)
    return re.sub(r"\bREAL\b", "DOUBLE PRECISION", sql)


MIGRATIONS: Final = (
    Migration(
        1,
        "jobs",
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
        CREATE INDEX jobs_user ON jobs(user_id, created_at)
        """,
    ),
    Migration(
        2,
        "per-server settings (a JSON document) and daily usage counters",
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
        )
        """,
    ),
    Migration(
        3,
        "job ownership by lease (several processes), per-user usage lookups, the session-start log",
        """
        ALTER TABLE jobs ADD COLUMN owner TEXT;
        ALTER TABLE jobs ADD COLUMN lease_until REAL NOT NULL DEFAULT 0;
        CREATE INDEX jobs_lease ON jobs(state, lease_until);
        CREATE INDEX usage_user ON usage(guild_id, user_id);
        CREATE TABLE gateway_identify (
            bucket INTEGER PRIMARY KEY,
            last_at REAL NOT NULL
        )
        """,
    ),
    Migration(
        4,
        "the kept normalised input of a job (re-roll after Discord's CDN link expired)",
        """
        ALTER TABLE jobs ADD COLUMN input_ref TEXT
        """,
    ),
    Migration(
        5,
        "what jobs cost: each job's price (micros), and the spending ledger per day, server, user, model",
        """
        ALTER TABLE jobs ADD COLUMN cost INTEGER NOT NULL DEFAULT 0;
        CREATE INDEX jobs_guild ON jobs(guild_id, created_at);
        CREATE TABLE spend (
            day TEXT NOT NULL,
            guild_id INTEGER NOT NULL,
            user_id INTEGER NOT NULL,
            model TEXT NOT NULL,
            jobs INTEGER NOT NULL,
            cost INTEGER NOT NULL,
            PRIMARY KEY (day, guild_id, user_id, model)
        );
        CREATE INDEX spend_guild ON spend(guild_id, day)
        """,
    ),
)

LATEST: Final = MIGRATIONS[-1].version


class SchemaTooNew(RuntimeError):
    """The database was written by a newer bot."""

    def __init__(self, where: str, version: int) -> None:
        super().__init__(
            f"{where} has schema version {version}, newer than this bot's {LATEST}; upgrade the bot"
        )
        self.version = version


def pending(current: int, where: str) -> list[Migration]:
    """The migrations still to apply to a database at ``current``; raises :class:`SchemaTooNew`."""
    if current > LATEST:
        raise SchemaTooNew(where, current)
    return [migration for migration in MIGRATIONS if migration.version > current]
