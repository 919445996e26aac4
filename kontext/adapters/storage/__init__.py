"""Persistence: SQLite for one process (the default), PostgreSQL for several (``DATABASE_URL``)."""

from __future__ import annotations

from dataclasses import dataclass

from kontext.adapters.storage.postgres import DatabaseProblem, PostgresStore, check_database
from kontext.adapters.storage.schema import SchemaTooNew
from kontext.adapters.storage.sqlite import DataDirInUse, SqliteStore
from kontext.config import Settings
from kontext.services.ledger import LocalSessionGate, MemoryLedger
from kontext.services.ports import SessionStartGate, Store, UsageLedger

__all__ = [
    "DataDirInUse",
    "DatabaseProblem",
    "PostgresStore",
    "SchemaTooNew",
    "SqliteStore",
    "Storage",
    "check_database",
    "open_storage",
]


@dataclass(frozen=True)
class Storage:
    """The store and what processes must agree on through it."""

    store: Store
    ledger: UsageLedger
    session_gate: SessionStartGate


async def open_storage(settings: Settings, *, owner: str) -> Storage:
    """Open the configured engine (migrating its schema) for the process called ``owner``."""
    if settings.database_url is not None:
        shared = PostgresStore(
            settings.database_url,
            owner=owner,
            lease_s=settings.lease_s,
            pool_size=settings.database_pool_size,
        )
        await shared.open()
        return Storage(shared, shared, shared)
    local = SqliteStore(settings.database_path, owner=owner, lease_s=settings.lease_s)
    await local.open()
    return Storage(local, MemoryLedger(local), LocalSessionGate())
