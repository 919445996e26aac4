"""What ``/usage`` and ``/kontext usage`` show, inside Discord's limits, in the reader's language."""

from __future__ import annotations

import io
import math

import discord

from kontext.adapters.discord.settings_view import FIELD_VALUE_LIMIT, capped
from kontext.domain.costs import Money, PriceTable, next_month_start
from kontext.domain.policy import next_reset
from kontext.domain.usage import UsageReport
from kontext.i18n import number, price, t
from kontext.services.moderation import PersonalUsage

#: File names of the attachments of ``/kontext usage``.
CHART_NAME = "kontext-usage.png"
CSV_NAME = "kontext-usage.csv"


def count_of(used: int, limit: int, locale: str) -> str:
    """``3 of 10 (7 left)`` or ``3 (no limit)``; a limit of 0 means none."""
    if limit <= 0:
        return t("usage_unlimited", locale, used=used)
    return t("usage_of", locale, used=used, limit=limit, left=max(0, limit - used))


def money_of(used: Money, limit: Money, locale: str) -> str:
    """``$0.12 of $1.00 ($0.88 left)`` or ``$0.12 (no limit)``; a limit of 0 means none."""
    if limit.micros <= 0:
        return t("usage_unlimited", locale, used=used)
    left = Money(max(0, limit.micros - used.micros), limit.currency)
    return t("usage_of", locale, used=used, limit=limit, left=left)


def price_lines(prices: PriceTable, locale: str) -> str:
    """``flux-kontext-pro: $0.04`` per line."""
    return "\n".join(f"{model}: {price(prices.money(cost), locale)}" for model, cost in prices.prices.items())


def _cooldown(usage: PersonalUsage, locale: str) -> str:
    cooldown = usage.settings.cooldown_s
    last = usage.usage.user_last_job_at
    if cooldown <= 0:
        return t("my_usage_cooldown_none", locale)
    if last is None or last + cooldown <= usage.now:
        return t("my_usage_cooldown_ready", locale)
    return t("my_usage_cooldown_wait", locale, at=math.ceil(last + cooldown))


def personal_view(usage: PersonalUsage, prices: PriceTable, locale: str) -> discord.Embed:
    """``/usage``: one member's edits, cooldown and spending on this server, and what an edit costs."""
    s, u = usage.settings, usage.usage
    money = prices.money
    embed = discord.Embed(
        title=t("my_usage_title", locale),
        description=t(
            "my_usage_resets",
            locale,
            day_reset=int(next_reset(usage.now)),
            month_reset=int(next_month_start(usage.now)),
        ),
        colour=discord.Colour.blurple(),
    )
    embed.add_field(
        name=t("my_usage_jobs", locale), value=count_of(u.user_jobs_today, s.user_daily_quota, locale)
    )
    embed.add_field(
        name=t("my_usage_server_jobs", locale),
        value=count_of(u.guild_jobs_today, s.guild_daily_quota, locale),
    )
    embed.add_field(name=t("my_usage_cooldown", locale), value=_cooldown(usage, locale))
    embed.add_field(
        name=t("my_usage_spent", locale),
        value=money_of(money(u.user_day_spent), money(s.user_daily_budget), locale),
    )
    embed.add_field(
        name=t("my_usage_server_spent", locale),
        value=money_of(money(u.guild_month_spent), money(s.monthly_budget), locale),
    )
    embed.add_field(name=t("my_usage_prices", locale), value=price_lines(prices, locale))
    return embed


def _lines(lines: list[str], locale: str) -> str:
    return capped(lines, locale, FIELD_VALUE_LIMIT, separator="\n")[0] or "—"


def report_view(
    report: UsageReport, locale: str, *, chart: bytes | None
) -> tuple[discord.Embed, list[discord.File]]:
    """``/kontext usage``: the summary embed, the chart (when it could be drawn) and the CSV."""
    days = len(report.days)
    embed = discord.Embed(title=t("usage_title", locale, days=days), colour=discord.Colour.blurple())
    if report.total_jobs == 0:
        embed.description = t("usage_none", locale)
    else:
        embed.description = t("usage_total_value", locale, jobs=report.total_jobs, cost=report.total_cost)
    models = [
        f"{model}: {number(report.jobs_of(model), locale)} · "
        f"{price(Money(sum(report.spent[model]), report.currency), locale)}"
        for model in report.models
    ]
    embed.add_field(name=t("usage_by_model", locale), value=_lines(models, locale), inline=False)
    users = [
        f"<@{user.user_id}>: {number(user.jobs, locale)} · {price(Money(user.cost, report.currency), locale)}"
        for user in report.top_users
    ]
    embed.add_field(name=t("usage_top_users", locale), value=_lines(users, locale), inline=False)
    failures = [f"`{code}`: {number(count, locale)}" for code, count in report.failures]
    embed.add_field(name=t("usage_failures", locale), value=_lines(failures, locale), inline=False)
    files = [discord.File(io.BytesIO(report.csv().encode("utf-8")), filename=CSV_NAME)]
    if chart is not None:
        files.insert(0, discord.File(io.BytesIO(chart), filename=CHART_NAME))
        embed.set_image(url=f"attachment://{CHART_NAME}")
        embed.set_footer(text=t("usage_footer", locale))
    else:
        embed.set_footer(text=t("usage_chart_failed", locale))
    return embed, files
