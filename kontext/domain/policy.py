"""The moderation decision for one request (pure: no Discord types, no I/O, no clock).

:func:`decide` returns :class:`Allowed` (the effective model and safety tolerance) or :class:`Denied`
(an i18n message key, its parameters and an operator detail). The cog only gathers the facts and shows
the outcome.

Rules, checked in this order (the first failing one is reported):

1. DMs (``guild_id`` None): denied (``policy_dm_disabled``) unless the operator allows DMs; then the
   bot-wide default model and safety apply and no server rule is checked.
2. Channel allow-list (``policy_channel``) — a thread is allowed if its parent channel is.
3. Role allow-list (``policy_role``).
4. Requested model allowed on this server (``policy_model``).
5. Block-list on the prompt (``policy_blocked``; the matching entry is only in ``detail``).
6. Per-user cooldown (``policy_cooldown``).
7. Per-user daily quota (``policy_user_quota``).
8. Per-server daily quota (``policy_guild_quota``).
9. Per-server monthly budget (``policy_guild_budget``): refused when this job's price would take the
   server's spending this UTC month past its cap.
10. Per-user daily budget on this server (``policy_user_budget``).
11. The operator's bot-wide monthly budget (``policy_bot_budget``; also in direct messages).

Admins (Manage Server / Administrator) bypass the *personal* limits — channel and role allow-lists,
cooldown, the per-user quota and the per-user budget — but NOT the server-wide rules: the allowed
models, the block-list, the per-server quota and budget, and the operator's budget apply to them too.

Effective safety = the server's value for this kind of channel (the bot-wide default until an admin sets
one) (``nsfw_safety`` only where the channel is
age-restricted), or the user's requested value if that is stricter (lower): a user can ask for stricter,
never looser. Model = the requested one (if allowed), else the server's default, else the bot-wide
default if allowed, else the first allowed model.

Quotas count jobs per UTC day: ``user_jobs_today`` / ``guild_jobs_today`` must be the counts for
``utc_day(now)``. A quota of N allows exactly N jobs; the request after that is denied until
``next_reset(now)`` (the next UTC midnight). Budgets compare money already committed (jobs admitted
and not refunded, see :mod:`kontext.domain.costs`) plus this job's price with the cap; a monthly cap
resets at the next first of the month, UTC.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kontext.domain.blocklist import find_blocked
from kontext.domain.costs import LIST_PRICES, Money, PriceTable, next_month_start
from kontext.domain.generation import MODELS
from kontext.domain.guild_settings import SAFETY_MAX, SAFETY_MIN, GuildSettings

DAY_S = 86_400
#: At most this many channel / role mentions are listed in a denial.
MAX_MENTIONS = 10


@dataclass(frozen=True)
class RequestFacts:
    """Everything :func:`decide` needs to know about one request."""

    guild_id: int | None
    channel_id: int
    channel_is_nsfw: bool
    user_id: int
    role_ids: frozenset[int]
    #: Manage Server or Administrator (see the module docstring for what this bypasses).
    is_admin: bool
    prompt: str
    requested_model: str | None
    requested_safety: int | None
    #: Unix time of the request.
    now: float
    user_jobs_today: int
    guild_jobs_today: int
    user_last_job_at: float | None
    #: For a thread: its parent channel (a thread in an allowed channel is allowed).
    parent_channel_id: int | None = None
    #: Money committed (micros) this UTC month by the server, today by the user on it, and this
    #: month by the whole bot (every server and DMs).
    guild_month_spent: int = 0
    user_day_spent: int = 0
    bot_month_spent: int = 0


@dataclass(frozen=True)
class BotDefaults:
    default_model: str
    default_safety: int
    allow_dms: bool
    prices: PriceTable = LIST_PRICES
    #: The operator's cap on the whole bot's spending per UTC month (micros); 0 = none.
    monthly_budget: int = 0


@dataclass(frozen=True)
class Allowed:
    model: str
    safety: int
    settings: GuildSettings
    #: The job's price (micros of ``BotDefaults.prices.currency``).
    cost: int = 0


@dataclass(frozen=True)
class Denied:
    #: i18n message key (``policy_*``).
    code: str
    params: dict[str, Any] = field(default_factory=dict)
    #: English operator / moderation-log detail (may name the matching block-list entry).
    detail: str = ""


def utc_day(ts: float) -> str:
    """The UTC calendar day of a unix time, ``'YYYY-MM-DD'``."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")


def next_reset(ts: float) -> float:
    """The next UTC midnight strictly after ``ts`` (unix time has no leap seconds)."""
    return float((math.floor(ts / DAY_S) + 1) * DAY_S)


def _clamp_safety(value: int) -> int:
    return min(max(value, SAFETY_MIN), SAFETY_MAX)


def _effective_safety(base: int, requested: int | None) -> int:
    if requested is not None:
        base = min(base, requested)
    return _clamp_safety(base)


def _mentions(ids: list[int], fmt: str) -> str:
    shown = " ".join(fmt.format(i) for i in ids[:MAX_MENTIONS])
    return shown + (" …" if len(ids) > MAX_MENTIONS else "")


def _pick_model(settings: GuildSettings, requested: str | None, bot_default: str) -> str:
    allowed = settings.allowed_models or list(MODELS)
    if requested is not None and requested in allowed:
        return requested
    if settings.default_model is not None and settings.default_model in allowed:
        return settings.default_model
    if bot_default in allowed:
        return bot_default
    return allowed[0]


def _direct_message(facts: RequestFacts, defaults: BotDefaults) -> Allowed | Denied:
    """Rule 1: DMs follow the bot-wide defaults, if the operator allows DMs at all."""
    if not defaults.allow_dms:
        return Denied("policy_dm_disabled", {}, "DMs are disabled (ALLOW_DMS)")
    if facts.requested_model is not None and facts.requested_model not in MODELS:
        return Denied(
            "policy_model",
            {"model": facts.requested_model, "models": ", ".join(MODELS)},
            f"unknown model {facts.requested_model!r}",
        )
    model = facts.requested_model or defaults.default_model
    price = defaults.prices.price(model)
    denied = _bot_budget_rule(facts, defaults, price)
    if denied is not None:
        return denied
    safety = _effective_safety(defaults.default_safety, facts.requested_safety)
    return Allowed(model, safety, GuildSettings(), price)


def _channel_rule(settings: GuildSettings, facts: RequestFacts) -> Denied | None:
    if not settings.channels or facts.is_admin:
        return None
    here = {facts.channel_id} | ({facts.parent_channel_id} if facts.parent_channel_id is not None else set())
    if here & set(settings.channels):
        return None
    return Denied(
        "policy_channel",
        {"channels": _mentions(settings.channels, "<#{}>")},
        f"channel {facts.channel_id} is not in the allow-list",
    )


def _role_rule(settings: GuildSettings, facts: RequestFacts) -> Denied | None:
    if not settings.roles or facts.is_admin or facts.role_ids & set(settings.roles):
        return None
    return Denied(
        "policy_role",
        {"roles": _mentions(settings.roles, "<@&{}>")},
        f"user {facts.user_id} has none of the allowed roles",
    )


def _model_rule(settings: GuildSettings, facts: RequestFacts) -> Denied | None:
    allowed_models = settings.allowed_models or list(MODELS)
    if facts.requested_model is None or facts.requested_model in allowed_models:
        return None
    return Denied(
        "policy_model",
        {"model": facts.requested_model, "models": ", ".join(allowed_models)},
        f"model {facts.requested_model!r} is not allowed here",
    )


def _blocklist_rule(settings: GuildSettings, facts: RequestFacts) -> Denied | None:
    entry = find_blocked(facts.prompt, settings.blocklist)
    if entry is None:
        return None
    return Denied("policy_blocked", {}, f"prompt matches block-list entry {entry!r}")


def _cooldown_rule(settings: GuildSettings, facts: RequestFacts) -> Denied | None:
    if settings.cooldown_s <= 0 or facts.user_last_job_at is None or facts.is_admin:
        return None
    remaining = facts.user_last_job_at + settings.cooldown_s - facts.now
    if remaining <= 0:
        return None
    seconds = min(math.ceil(remaining), settings.cooldown_s)
    return Denied(
        "policy_cooldown",
        {"seconds": seconds, "retry_at": math.ceil(facts.now + seconds)},
        f"cooldown: {seconds} s left of {settings.cooldown_s} s",
    )


def _user_quota_rule(settings: GuildSettings, facts: RequestFacts) -> Denied | None:
    quota = settings.user_daily_quota
    if quota <= 0 or facts.is_admin or facts.user_jobs_today < quota:
        return None
    return Denied(
        "policy_user_quota",
        {"limit": quota, "reset_at": int(next_reset(facts.now))},
        f"user quota used: {facts.user_jobs_today}/{quota} on {utc_day(facts.now)}",
    )


def _guild_quota_rule(settings: GuildSettings, facts: RequestFacts) -> Denied | None:
    quota = settings.guild_daily_quota
    if quota <= 0 or facts.guild_jobs_today < quota:
        return None
    return Denied(
        "policy_guild_quota",
        {"limit": quota, "reset_at": int(next_reset(facts.now))},
        f"server quota used: {facts.guild_jobs_today}/{quota} on {utc_day(facts.now)}",
    )


def _over(spent: int, price: int, cap: int) -> bool:
    return cap > 0 and spent + price > cap


def _budget(
    code: str, what: str, spent: int, cap: int, price: int, reset_at: float, defaults: BotDefaults
) -> Denied | None:
    """Denied with ``code`` when ``price`` would take ``spent`` past ``cap`` (0 = no cap)."""
    if not _over(spent, price, cap):
        return None
    money = defaults.prices.money
    params = {
        "left": money(max(0, cap - spent)),
        "limit": money(cap),
        "price": money(price),
        "reset_at": int(reset_at),
    }
    detail = f"{what}: {_m(defaults, spent)} spent of {_m(defaults, cap)}, job costs {_m(defaults, price)}"
    return Denied(code, params, detail)


def _guild_budget_rule(
    settings: GuildSettings, facts: RequestFacts, defaults: BotDefaults, price: int
) -> Denied | None:
    spent, cap, reset = facts.guild_month_spent, settings.monthly_budget, next_month_start(facts.now)
    return _budget("policy_guild_budget", "server budget this month", spent, cap, price, reset, defaults)


def _user_budget_rule(
    settings: GuildSettings, facts: RequestFacts, defaults: BotDefaults, price: int
) -> Denied | None:
    if facts.is_admin:
        return None
    spent, cap, reset = facts.user_day_spent, settings.user_daily_budget, next_reset(facts.now)
    return _budget("policy_user_budget", "member budget today", spent, cap, price, reset, defaults)


def _bot_budget_rule(facts: RequestFacts, defaults: BotDefaults, price: int) -> Denied | None:
    spent, cap, reset = facts.bot_month_spent, defaults.monthly_budget, next_month_start(facts.now)
    what = "bot-wide budget (OPERATOR_MONTHLY_BUDGET) this month"
    return _budget("policy_bot_budget", what, spent, cap, price, reset, defaults)


def _m(defaults: BotDefaults, micros: int) -> str:
    return str(Money(micros, defaults.prices.currency))


#: Rules 2-8 of the module docstring, in order.
_SERVER_RULES = (
    _channel_rule,
    _role_rule,
    _model_rule,
    _blocklist_rule,
    _cooldown_rule,
    _user_quota_rule,
    _guild_quota_rule,
)


def decide(settings: GuildSettings, facts: RequestFacts, defaults: BotDefaults) -> Allowed | Denied:
    """Allow (with the effective model and safety) or deny one request; see the module docstring."""
    if facts.guild_id is None:
        return _direct_message(facts, defaults)
    for rule in _SERVER_RULES:
        denied = rule(settings, facts)
        if denied is not None:
            return denied
    model = _pick_model(settings, facts.requested_model, defaults.default_model)
    price = defaults.prices.price(model)
    denied = (
        _guild_budget_rule(settings, facts, defaults, price)
        or _user_budget_rule(settings, facts, defaults, price)
        or _bot_budget_rule(facts, defaults, price)
    )
    if denied is not None:
        return denied
    server_safety = settings.safety_for(facts.channel_is_nsfw, defaults.default_safety)
    safety = _effective_safety(server_safety, facts.requested_safety)
    return Allowed(model, safety, settings, price)
