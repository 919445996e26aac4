"""Kontext entry point: load `.env`, validate settings, build the bot, run it until SIGTERM/SIGINT.

python bot.py           run the bot
python bot.py --check   validate the configuration (and that PostgreSQL and the S3 bucket answer, when
                        configured) and exit (0 ok, 2 bad) without connecting to Discord or APIMart
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sqlite3
import sys

import aiohttp
import discord
from dotenv import load_dotenv

from kontext.adapters.storage import DatabaseProblem, DataDirInUse, SchemaTooNew
from kontext.adapters.storage.copy import copy_sqlite_to_postgres
from kontext.app import create_bot, preflight
from kontext.config import ConfigError, Settings, load_settings, secret_values
from kontext.support.background import BackgroundTasks
from kontext.support.logs import setup_logging

log = logging.getLogger("kontext.bot")

__all__ = ["create_bot", "main", "run_bot"]


async def run_bot(settings: Settings) -> int:
    bot = create_bot(settings)
    shutdown = BackgroundTasks("shutdown", log)

    def on_signal(sig: signal.Signals) -> None:
        log.info("received %s, shutting down", sig.name)
        shutdown.spawn(bot.close(), name=f"close-on-{sig.name}")

    loop = asyncio.get_running_loop()
    if sys.platform != "win32":  # Windows event loops have no signal handlers; Ctrl+C still works
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal, sig)
    try:
        async with bot:
            await bot.start(settings.discord_token)
    except discord.LoginFailure:
        log.error(
            "Discord rejected DISCORD_TOKEN (401 Unauthorized); reset the token in the developer portal"
        )
        return 2
    except discord.PrivilegedIntentsRequired:
        log.error(
            "Discord refused the gateway intents; this bot needs no privileged intents — check the portal"
        )
        return 2
    except ConfigError as exc:  # a setting that only fails once tried (database, bucket, gateway)
        log.error("could not start: %s", exc)
        return 1
    except (aiohttp.ClientError, OSError, sqlite3.Error) as exc:
        log.error(
            "could not start: %s (Discord API %s, data dir %s)",
            exc,
            settings.discord_api_base,
            settings.data_dir,
        )
        return 1
    finally:
        await shutdown.drain()
    return 0


def copy_to_postgres(settings: Settings) -> int:
    """Move from SQLite to PostgreSQL (stop the bot first); 0 when copied, 2 when a setting is wrong."""
    if settings.database_url is None:
        print("kontext: configuration error: DATABASE_URL: required to copy to PostgreSQL", file=sys.stderr)
        return 2
    if not settings.database_path.exists():
        print(f"kontext: nothing to copy: {settings.database_path} does not exist", file=sys.stderr)
        return 2
    try:
        copied = asyncio.run(copy_sqlite_to_postgres(settings.database_path, settings.database_url))
    except (DatabaseProblem, DataDirInUse, SchemaTooNew) as exc:
        variable = "DATA_DIR" if isinstance(exc, DataDirInUse) else "DATABASE_URL"
        print(f"kontext: configuration error: {variable}: {exc}", file=sys.stderr)
        return 2
    print(f"kontext: copied {copied} from {settings.database_path} to PostgreSQL")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Kontext: AI image editing for Discord")
    parser.add_argument("--check", action="store_true", help="validate the configuration and exit")
    parser.add_argument("--env-file", default=".env", help="dotenv file to load (default .env)")
    parser.add_argument(
        "--copy-to-postgres",
        action="store_true",
        help="copy jobs, settings and usage from DATA_DIR's SQLite file to DATABASE_URL, then exit",
    )
    args = parser.parse_args(argv)
    load_dotenv(args.env_file, override=False)
    try:
        settings = load_settings(os.environ)
    except ConfigError as exc:
        print(f"kontext: configuration error: {exc}", file=sys.stderr)
        return 2
    if args.copy_to_postgres:
        return copy_to_postgres(settings)
    if args.check:
        try:
            asyncio.run(preflight(settings))
        except ConfigError as exc:
            print(f"kontext: configuration error: {exc}", file=sys.stderr)
            return 2
        print(
            f"kontext: configuration OK (image host {settings.image_host}, data dir {settings.data_dir}, "
            f"APIMart {settings.apimart_base_url})"
        )
        return 0
    setup_logging(
        settings.log_level,
        json_lines=settings.log_json,
        secrets=secret_values(settings),  # every secret of the settings table, METRICS_TOKEN included
    )
    return asyncio.run(run_bot(settings))


if __name__ == "__main__":
    sys.exit(main())
