"""What ``/kontext`` shows: one server's settings and today's usage, inside Discord's limits whatever
the data (an embed field holds 1,024 characters, an embed 6,000, a message 2,000).

Long lists (up to 500 channels, 500 roles, 200 block-list entries) are summarised in the embed
("…and 457 more") and attached in full as a text file.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import UTC, datetime

import discord

from kontext.domain.costs import LIST_PRICES, PriceTable
from kontext.domain.guild_settings import GuildSettings
from kontext.domain.policy import next_reset
from kontext.i18n import price, t

#: Discord's limits (from its API reference).
FIELD_VALUE_LIMIT = 1024
CONTENT_LIMIT = 2000


@dataclass(frozen=True)
class ServerState:
    """Everything about one server that ``/kontext show`` displays."""

    settings: GuildSettings
    usage_total: int
    top_users: list[tuple[int, int]]
    now: float
    bot_default_model: str
    bot_default_safety: int
    log_problem: str | None  # already worded for the reader, or None
    prices: PriceTable = LIST_PRICES
    #: Money committed this UTC month (micros).
    month_spent: int = 0


def capped(items: list[str], locale: str, limit: int, separator: str = ", ") -> tuple[str, bool]:
    """As many ``items`` as fit in ``limit`` characters, then "…and N more"; True when some were left out."""
    shown: list[str] = []
    for index, item in enumerate(items):
        rest = len(items) - index - 1
        more = t("show_list_more", locale, count=rest) if rest else ""
        candidate = separator.join([*shown, item])
        tail = (separator if more else "") + more
        if len(candidate) + len(tail) > limit:
            more = t("show_list_more", locale, count=len(items) - index)
            return separator.join(shown) + (separator if shown else "") + more, True
        shown.append(item)
    return separator.join(shown), False


def settings_view(
    state: ServerState, locale: str, *, title: str
) -> tuple[discord.Embed, discord.File | None]:
    """The settings embed, and the full lists as a text file when the embed had to shorten them."""
    s = state.settings
    embed = discord.Embed(title=title, colour=discord.Colour.blurple())
    for key, chosen in (("show_safety", s.safety), ("show_nsfw_safety", s.nsfw_safety)):
        shown = (
            str(chosen) if chosen is not None else f"{state.bot_default_safety} ({t('show_default', locale)})"
        )
        embed.add_field(name=t(key, locale), value=shown)
    default_model = s.default_model or state.bot_default_model
    embed.add_field(
        name=t("show_models", locale),
        value=f"{', '.join(s.allowed_models)}\n{t('show_default', locale)}: {default_model}",
    )
    channels, more_channels = capped([f"<#{i}>" for i in s.channels], locale, FIELD_VALUE_LIMIT)
    roles, more_roles = capped([f"<@&{i}>" for i in s.roles], locale, FIELD_VALUE_LIMIT)
    embed.add_field(name=t("show_channels", locale), value=channels or t("show_everywhere", locale))
    embed.add_field(name=t("show_roles", locale), value=roles or t("show_everyone", locale))
    cooldown = t("show_cooldown_value", locale, seconds=s.cooldown_s) if s.cooldown_s else "—"
    embed.add_field(name=t("show_cooldown", locale), value=cooldown)
    quotas = t("show_quota_value", locale, user=s.user_daily_quota or "∞", server=s.guild_daily_quota or "∞")
    embed.add_field(name=t("show_quota", locale), value=quotas)
    log_value = f"<#{s.log_channel_id}>" if s.log_channel_id else "—"
    if state.log_problem:
        log_value += "\n⚠️ " + t("show_log_problem", locale, problem=state.log_problem)
    embed.add_field(name=t("show_log_channel", locale), value=log_value)
    embed.add_field(
        name=t("show_blocklist", locale), value=t("show_blocklist_count", locale, count=len(s.blocklist))
    )
    embed.add_field(name=t("show_budget", locale), value=budget_lines(state, locale), inline=False)
    usage = t("show_usage_value", locale, total=state.usage_total, reset_at=int(next_reset(state.now)))
    if state.top_users:
        usage += "\n" + "\n".join(f"<@{user}>: {count}" for user, count in state.top_users)
    today = datetime.fromtimestamp(state.now, UTC).date()
    embed.add_field(name=t("show_usage", locale, date=today), value=usage, inline=False)
    embed.set_footer(text=t("show_footer", locale))
    attachment = full_lists(s, locale) if more_channels or more_roles else None
    return embed, attachment


def budget_lines(state: ServerState, locale: str) -> str:
    """The server's monthly budget and what is spent, the per-member daily budget, the prices."""
    s, money = state.settings, state.prices.money
    spent = money(state.month_spent)
    if s.monthly_budget:
        server = t("show_budget_server", locale, spent=spent, limit=money(s.monthly_budget))
    else:
        server = t("show_budget_server_none", locale, spent=spent)
    if s.user_daily_budget:
        member = t("show_budget_user", locale, limit=money(s.user_daily_budget))
    else:
        member = t("show_budget_user_none", locale)
    prices = " · ".join(
        f"{model} {price(money(cost), locale)}" for model, cost in state.prices.prices.items()
    )
    return "\n".join([server, member, t("show_budget_prices", locale, prices=prices)])


def full_lists(s: GuildSettings, locale: str) -> discord.File:
    """Every allowed channel and role, one per line, as ``kontext-lists.txt``."""
    lines = [f"# {t('show_channels', locale)} ({len(s.channels)})", *map(str, s.channels), ""]
    lines += [f"# {t('show_roles', locale)} ({len(s.roles)})", *map(str, s.roles), ""]
    return text_file("kontext-lists.txt", lines)


def text_file(name: str, lines: list[str]) -> discord.File:
    return discord.File(io.BytesIO("\n".join(lines).encode("utf-8")), filename=name)


def blocklist_reply(entries: list[str], locale: str) -> tuple[str, discord.File | None]:
    """The block-list as a message, with the whole list attached when it does not fit."""
    if not entries:
        return t("show_blocklist_empty", locale), None
    items = [f"• {discord.utils.escape_markdown(entry)}" for entry in entries]
    text, shortened = capped(items, locale, CONTENT_LIMIT, separator="\n")
    return text, text_file("kontext-blocklist.txt", entries) if shortened else None
