"""Per-server moderation settings (pure data, no Discord types).

:meth:`GuildSettings.from_dict` reads stored data tolerantly (it never raises; bad values are clamped or
dropped and logged). :meth:`GuildSettings.with_changes` is the only way an admin's change gets in: it
validates and raises :class:`SettingsError` whose ``code`` is a message key in :mod:`kontext.i18n`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from kontext.domain.blocklist import compile_pattern
from kontext.domain.errors import KontextError
from kontext.domain.generation import MODELS
from kontext.domain.values import whole_number

log = logging.getLogger("kontext.domain.guild_settings")

SAFETY_MIN = 0
SAFETY_MAX = 6
DEFAULT_SAFETY = 2
MAX_BLOCKLIST_ENTRIES = 200
MAX_BLOCKLIST_ENTRY_CHARS = 100
MAX_QUOTA = 100_000
MAX_COOLDOWN_S = 86_400
#: The largest budget (micros of the price currency): one million units.
MAX_BUDGET = 1_000_000 * 1_000_000
#: Upper bound for the channel and role allow-lists (Discord allows 500 channels and 250 roles).
MAX_ID_LIST = 500
_MAX_SNOWFLAKE = 2**63 - 1


class SettingsError(KontextError):
    """An admin asked for an invalid setting; ``code`` is the i18n key, ``params`` fill it in."""

    def __init__(self, code: str, params: Mapping[str, Any] | None = None, detail: str = "") -> None:
        super().__init__(detail or code, **dict(params or {}))
        self.code = code


def _all_models() -> list[str]:
    return list(MODELS)


@dataclass
class GuildSettings:
    """One server's settings. Defaults are what a new server gets."""

    #: Safety tolerance (0 strictest … 6 most permissive) in ordinary channels; None = the bot-wide
    #: default (``DEFAULT_SAFETY_TOLERANCE``), so the operator's default applies until an admin chooses.
    safety: int | None = None
    #: Safety tolerance used only where ``channel.is_nsfw()``; None = the bot-wide default.
    nsfw_safety: int | None = None
    allowed_models: list[str] = field(default_factory=_all_models)
    #: None → the bot-wide default model (if allowed).
    default_model: str | None = None
    #: Allow-list of channel ids; empty = everywhere.
    channels: list[int] = field(default_factory=list)
    #: Allow-list of role ids; empty = everyone.
    roles: list[int] = field(default_factory=list)
    #: Block-list entries (see :mod:`kontext.domain.blocklist`).
    blocklist: list[str] = field(default_factory=list)
    #: Seconds between two jobs of one user; 0 = off.
    cooldown_s: int = 0
    #: Jobs per user per UTC day; 0 = unlimited.
    user_daily_quota: int = 0
    #: Jobs per server per UTC day; 0 = unlimited.
    guild_daily_quota: int = 0
    log_channel_id: int | None = None
    #: Spending cap of the server per UTC calendar month (micros of the price currency); 0 = none.
    monthly_budget: int = 0
    #: Spending cap of one user on this server per UTC day (micros); 0 = none.
    user_daily_budget: int = 0

    def limits_usage(self) -> bool:
        """Whether admitting a request depends on usage so far (a quota, cooldown or budget is set)."""
        return bool(
            self.cooldown_s
            or self.user_daily_quota
            or self.guild_daily_quota
            or self.monthly_budget
            or self.user_daily_budget
        )

    def safety_for(self, channel_is_nsfw: bool, default: int) -> int:
        """The server's tolerance for this kind of channel (``default`` where it has not chosen)."""
        chosen = self.nsfw_safety if channel_is_nsfw else self.safety
        return default if chosen is None else chosen

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy (lists are copied)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> GuildSettings:
        """Settings from stored data: unknown keys ignored, invalid values clamped or dropped (logged)."""
        if not isinstance(data, Mapping):
            if data is not None:
                log.warning(
                    "guild settings: stored value is %s, not a mapping; using defaults", type(data).__name__
                )
            return cls()
        out = cls()
        for name, load in _LOADERS.items():
            if name in data:
                setattr(out, name, load(data[name]))
        out.default_model = _load_default_model(data.get("default_model"), out.allowed_models)
        return out

    def with_changes(self, **changes: Any) -> GuildSettings:
        """A validated copy with ``changes`` applied; raises :class:`SettingsError` for invalid values.

        Unknown field names or wrong types are programming errors (:class:`TypeError`). If the
        allowed models change without an explicit ``default_model`` and the current default is no
        longer allowed, the default falls back to None (the bot-wide default).
        """
        names = {f.name for f in fields(self)}
        unknown = set(changes) - names
        if unknown:
            raise TypeError(f"unknown guild setting(s): {', '.join(sorted(unknown))}")
        clean: dict[str, Any] = {}
        for name, value in changes.items():
            clean[name] = _VALIDATORS[name](value)
        new = replace(self, **clean)
        # Copy lists so the result never shares mutable state with self.
        new.allowed_models = list(new.allowed_models)
        new.channels = list(new.channels)
        new.roles = list(new.roles)
        new.blocklist = list(new.blocklist)
        if new.default_model is not None and new.default_model not in new.allowed_models:
            if "default_model" in changes:
                raise SettingsError(
                    "settings_default_model_not_allowed",
                    {"model": new.default_model, "models": ", ".join(new.allowed_models)},
                )
            new.default_model = None
        return new


# --- validation for with_changes -------------------------------------------------------------------


def _check_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    return value


def _v_safety(value: Any) -> int | None:
    if value is None:  # back to the bot-wide default
        return None
    number = _check_int("safety", value)
    if not SAFETY_MIN <= number <= SAFETY_MAX:
        raise SettingsError("settings_safety_range", {"value": number, "min": SAFETY_MIN, "max": SAFETY_MAX})
    return number


def _v_cooldown(value: Any) -> int:
    number = _check_int("cooldown_s", value)
    if not 0 <= number <= MAX_COOLDOWN_S:
        raise SettingsError("settings_cooldown_range", {"value": number, "max": MAX_COOLDOWN_S})
    return number


def _v_quota(value: Any) -> int:
    number = _check_int("quota", value)
    if not 0 <= number <= MAX_QUOTA:
        raise SettingsError("settings_quota_range", {"value": number, "max": MAX_QUOTA})
    return number


def _v_budget(value: Any) -> int:
    number = _check_int("budget", value)
    if not 0 <= number <= MAX_BUDGET:
        raise SettingsError("settings_budget_range", {"max": MAX_BUDGET // 1_000_000})
    return number


def _v_models(value: Any) -> list[str]:
    models = _dedupe(_check_str_list("allowed_models", value))
    if not models:
        raise SettingsError("settings_models_empty")
    for model in models:
        if not _known_model(model):
            raise SettingsError("settings_model_unknown", {"model": model, "models": ", ".join(MODELS)})
    return models


def _v_default_model(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError("default_model must be a str or None")
    if not _known_model(value):
        raise SettingsError("settings_model_unknown", {"model": value, "models": ", ".join(MODELS)})
    return value


def _v_id(value: Any) -> int:
    number = _check_int("id", value)
    if not 0 < number <= _MAX_SNOWFLAKE:
        raise SettingsError("settings_id_invalid", {"value": number})
    return number


def _v_ids(value: Any) -> list[int]:
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise TypeError("expected a list of ids")
    ids = _dedupe([_v_id(v) for v in value])
    if len(ids) > MAX_ID_LIST:
        raise SettingsError("settings_list_too_long", {"limit": MAX_ID_LIST})
    return ids


def _v_log_channel(value: Any) -> int | None:
    return None if value is None else _v_id(value)


def _v_blocklist(value: Any) -> list[str]:
    entries: list[str] = []
    seen: set[str] = set()
    for raw in _check_str_list("blocklist", value):
        entry = raw.strip()
        if len(entry) > MAX_BLOCKLIST_ENTRY_CHARS:
            raise SettingsError(
                "settings_blocklist_entry_too_long",
                {"length": len(entry), "limit": MAX_BLOCKLIST_ENTRY_CHARS},
            )
        if not entry or not _compiles(entry):
            raise SettingsError("settings_blocklist_entry_empty", {"entry": entry})
        key = entry.casefold()
        if key not in seen:
            seen.add(key)
            entries.append(entry)
    if len(entries) > MAX_BLOCKLIST_ENTRIES:
        raise SettingsError("settings_blocklist_full", {"limit": MAX_BLOCKLIST_ENTRIES})
    return entries


_VALIDATORS: dict[str, Any] = {
    "safety": _v_safety,
    "nsfw_safety": _v_safety,
    "allowed_models": _v_models,
    "default_model": _v_default_model,
    "channels": _v_ids,
    "roles": _v_ids,
    "blocklist": _v_blocklist,
    "cooldown_s": _v_cooldown,
    "user_daily_quota": _v_quota,
    "guild_daily_quota": _v_quota,
    "log_channel_id": _v_log_channel,
    "monthly_budget": _v_budget,
    "user_daily_budget": _v_budget,
}


# --- helpers ----------------------------------------------------------------------------------------


def _known_model(value: Any) -> bool:
    return isinstance(value, str) and value in MODELS


def _dedupe(items: Iterable[Any]) -> list[Any]:
    return list(dict.fromkeys(items))


def _check_str_list(name: str, value: Any) -> list[str]:
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise TypeError(f"{name} must be a list of str")
    items = list(value)
    if not all(isinstance(v, str) for v in items):
        raise TypeError(f"{name} must be a list of str")
    return items


def _compiles(entry: str) -> bool:
    try:
        compile_pattern(entry)
    except ValueError:
        return False
    return True


def _load_int(name: str, value: Any, lo: int, hi: int, default: int) -> int:
    number = whole_number(value)
    if number is None:
        log.warning("guild settings: %s=%.80r is not a number; using %d", name, value, default)
        return default
    if not lo <= number <= hi:
        clamped = min(max(number, lo), hi)
        log.warning("guild settings: %s=%d out of range %d..%d; using %d", name, number, lo, hi, clamped)
        return clamped
    return number


def _load_models(value: Any) -> list[str]:
    models = _dedupe([m for m in _load_list("allowed_models", value) if _known_model(m)])
    if not models:
        log.warning("guild settings: no valid allowed_models; allowing all")
        return _all_models()
    return models


def _load_default_model(value: Any, allowed: list[str]) -> str | None:
    if value is None or (isinstance(value, str) and value in allowed):
        return value
    log.warning("guild settings: dropped default_model %.80r (unknown or not allowed)", value)
    return None


def _load_ids(name: str, value: Any) -> list[int]:
    ids = [i for i in (_load_id(name, v) for v in _load_list(name, value)) if i is not None]
    return _dedupe(ids)[:MAX_ID_LIST]


def _load_list(name: str, value: Any) -> list[Any]:
    if isinstance(value, list | tuple):
        return list(value)
    log.warning("guild settings: %s is %s, not a list; ignored", name, type(value).__name__)
    return []


def _load_id(name: str, value: Any) -> int | None:
    # Snowflakes do not survive a float; only ints and digit strings are trusted.
    number = whole_number(value, allow_float=False)
    if number is None or not 0 < number <= _MAX_SNOWFLAKE:
        log.warning("guild settings: dropped invalid id %.80r in %s", value, name)
        return None
    return number


def _load_safety(name: str, value: Any) -> int | None:
    """A stored safety value; None (the bot-wide default) stays None, garbage becomes None too."""
    if value is None:
        return None
    if whole_number(value) is None:
        log.warning("guild settings: %s=%.80r is not a number; using the bot-wide default", name, value)
        return None
    return _load_int(name, value, SAFETY_MIN, SAFETY_MAX, DEFAULT_SAFETY)


def _load_log_channel(value: Any) -> int | None:
    return None if value is None else _load_id("log_channel_id", value)


def _load_blocklist(values: list[Any]) -> list[str]:
    entries: list[str] = []
    seen: set[str] = set()
    for value in values:
        entry = value.strip() if isinstance(value, str) else ""
        if not entry or len(entry) > MAX_BLOCKLIST_ENTRY_CHARS or not _compiles(entry):
            log.warning("guild settings: dropped invalid block-list entry %.80r", value)
            continue
        if entry.casefold() in seen:
            continue
        seen.add(entry.casefold())
        entries.append(entry)
    if len(entries) > MAX_BLOCKLIST_ENTRIES:
        log.warning(
            "guild settings: block-list has %d entries; keeping %d", len(entries), MAX_BLOCKLIST_ENTRIES
        )
        entries = entries[:MAX_BLOCKLIST_ENTRIES]
    return entries


def _int_loader(name: str, lo: int, hi: int, default: int) -> Callable[[Any], int]:
    return lambda value: _load_int(name, value, lo, hi, default)


#: How each stored field is read back (``default_model`` is read last: it depends on the models).
_LOADERS: dict[str, Callable[[Any], Any]] = {
    "safety": lambda value: _load_safety("safety", value),
    "nsfw_safety": lambda value: _load_safety("nsfw_safety", value),
    "cooldown_s": _int_loader("cooldown_s", 0, MAX_COOLDOWN_S, 0),
    "user_daily_quota": _int_loader("user_daily_quota", 0, MAX_QUOTA, 0),
    "guild_daily_quota": _int_loader("guild_daily_quota", 0, MAX_QUOTA, 0),
    "allowed_models": _load_models,
    "channels": lambda value: _load_ids("channels", value),
    "roles": lambda value: _load_ids("roles", value),
    "blocklist": lambda value: _load_blocklist(_load_list("blocklist", value)),
    "log_channel_id": _load_log_channel,
    "monthly_budget": _int_loader("monthly_budget", 0, MAX_BUDGET, 0),
    "user_daily_budget": _int_loader("user_daily_budget", 0, MAX_BUDGET, 0),
}
