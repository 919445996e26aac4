"""Typed bot-wide settings read from the environment (and ``.env``), validated once at start.

The single source of truth is the table in :mod:`kontext.config.settings` (the body of
:class:`Settings`; its docstring explains how to add a setting: one row). From it come:

* :func:`load_settings` — a frozen, typed :class:`Settings`, or :class:`ConfigError` naming the first
  bad variable (``str()`` is ``VARIABLE: problem``; it never contains a value, so never a secret);
* the README's settings table and ``.env.example`` — ``python -m kontext.config --write`` regenerates
  them, ``--markdown`` / ``--env-example`` print them, ``--check`` exits 1 when they are stale.
"""

from kontext.config.schema import ConfigError, secret_values
from kontext.config.settings import IMAGE_HOSTS, LOG_LEVELS, Settings, load_settings

__all__ = [
    "IMAGE_HOSTS",
    "LOG_LEVELS",
    "ConfigError",
    "Settings",
    "load_settings",
    "secret_values",
]
