"""Money, prices, months, who is billed, budget rules and the usage report (pure parts)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kontext.domain.costs import (
    LIST_PRICES,
    Money,
    PriceTable,
    billed,
    month_days,
    month_first_day,
    next_month_start,
    to_micros,
    utc_month,
)
from kontext.domain.errors import (
    ApiBadRequest,
    ApiBalanceError,
    ApiMalformed,
    ApiRateLimited,
    ApiServerError,
    ApiSubmitUncertain,
    ApiUnavailable,
    BrokenImage,
    JobInterrupted,
    KontextError,
    ResultError,
    TaskFailed,
    TaskTimedOut,
)
from kontext.domain.guild_settings import GuildSettings, SettingsError
from kontext.domain.jobs import JobState
from kontext.domain.policy import Allowed, BotDefaults, Denied, RequestFacts, decide
from kontext.domain.usage import LedgerRow, report_days, summarise
from kontext.i18n import price, t

NOW = datetime(2026, 12, 6, 15, 30, tzinfo=UTC).timestamp()
DEFAULTS = BotDefaults("flux-kontext-pro", 2, allow_dms=True, prices=LIST_PRICES)


def facts(**changes: object) -> RequestFacts:
    base = RequestFacts(
        guild_id=1,
        channel_id=2,
        channel_is_nsfw=False,
        user_id=3,
        role_ids=frozenset(),
        is_admin=False,
        prompt="make it blue",
        requested_model=None,
        requested_safety=None,
        now=NOW,
        user_jobs_today=0,
        guild_jobs_today=0,
        user_last_job_at=None,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


# --- money and months -------------------------------------------------------------------------------


def test_money_is_exact_micros() -> None:
    assert to_micros("0.04") == 40_000 and to_micros(0.1) == 100_000 and to_micros("0.0000005") == 1
    assert sum([Money.of("0.1", "USD").micros] * 10) == 1_000_000
    assert str(Money(40_000, "USD")) == "0.04 USD"


@given(st.decimals(min_value=0, max_value=1_000_000, places=6))
def test_money_round_trips_six_places(amount: object) -> None:
    money = Money.of(str(amount), "EUR")
    assert money.amount == Money(money.micros, "EUR").amount


def test_calendar_months_in_utc() -> None:
    assert utc_month(NOW) == "2026-12" and month_first_day("2026-12-06") == "2026-12-01"
    assert next_month_start(NOW) == datetime(2027, 1, 1, tzinfo=UTC).timestamp()
    assert (
        next_month_start(datetime(2026, 2, 28, 23, 59, tzinfo=UTC).timestamp())
        == datetime(2026, 3, 1, tzinfo=UTC).timestamp()
    )
    assert month_days(datetime(2028, 2, 10, tzinfo=UTC).timestamp()) == 29


def test_an_unknown_model_costs_the_dearest_price() -> None:
    prices = PriceTable("USD", {"a": 1, "b": 5})
    assert prices.price("a") == 1 and prices.price("zzz") == 5


def test_money_is_written_the_reader_s_way() -> None:
    assert price(Money(40_000, "USD"), "en-US") == "$0.04"
    assert price(Money(40_000, "USD"), "de") == "0,04\xa0$"
    assert price(Money(3_500, "USD"), "en-US") == "$0.0035", "sub-cent prices keep their digits"
    assert price(Money(12_345_670_000, "EUR"), "fr") == "12\u202f345,67\xa0€"
    assert t(
        "usage_of", "en-US", used=Money(50_000, "USD"), limit=Money(10**6, "USD"), left=Money(950_000, "USD")
    ) == ("$0.05 of $1.00 ($0.95 left)")


# --- who is billed ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reached", "error", "expected"),
    [
        (JobState.RECEIVED, BrokenImage("x"), False),
        (JobState.HOSTED, KontextError("host down"), False),
        (JobState.SUBMITTING, ApiBadRequest("422"), False),
        (JobState.SUBMITTING, ApiBalanceError("402"), False),
        (JobState.SUBMITTING, ApiRateLimited("429"), False),
        (JobState.SUBMITTING, ApiServerError("500"), False),
        (JobState.SUBMITTING, ApiUnavailable("refused"), False),
        (JobState.SUBMITTING, ApiSubmitUncertain("no reply"), True),
        (JobState.SUBMITTING, ApiMalformed("garbage"), True),
        (JobState.SUBMITTING, JobInterrupted("stopped"), True),
        (JobState.SUBMITTING, TaskTimedOut("deadline"), True),
        (JobState.SUBMITTED, TaskTimedOut("deadline"), True),
        (JobState.SUBMITTED, TaskFailed("refused"), True),
        (JobState.DELIVERING, ResultError("download"), True),
        (JobState.DELIVERING, None, True),
    ],
)
def test_billed_follows_what_the_provider_did(
    reached: JobState, error: KontextError | None, expected: bool
) -> None:
    assert billed(reached, error) is expected


def test_failed_tasks_follow_the_operator_s_setting() -> None:
    assert billed(JobState.SUBMITTED, TaskFailed("refused"), charge_failed_tasks=False) is False
    assert billed(JobState.SUBMITTED, TaskTimedOut("x"), charge_failed_tasks=False) is True


# --- budget rules -----------------------------------------------------------------------------------


def test_the_server_budget_allows_up_to_the_cap_and_no_further() -> None:
    settings = GuildSettings(monthly_budget=120_000)
    allowed = decide(settings, facts(guild_month_spent=80_000), DEFAULTS)
    assert isinstance(allowed, Allowed) and allowed.cost == 40_000
    denied = decide(settings, facts(guild_month_spent=80_001), DEFAULTS)
    assert isinstance(denied, Denied) and denied.code == "policy_guild_budget"
    assert denied.params["left"] == Money(39_999, "USD") and denied.params["price"] == Money(40_000, "USD")
    assert denied.params["reset_at"] == int(datetime(2027, 1, 1, tzinfo=UTC).timestamp())
    assert "server budget" in denied.detail


def test_the_dearer_model_is_refused_first() -> None:
    settings = GuildSettings(monthly_budget=100_000)
    assert isinstance(decide(settings, facts(guild_month_spent=50_000), DEFAULTS), Allowed)
    max_model = facts(guild_month_spent=50_000, requested_model="flux-kontext-max")
    assert isinstance(decide(settings, max_model, DEFAULTS), Denied)


def test_admins_are_not_held_to_the_member_budget_but_to_the_server_s() -> None:
    settings = GuildSettings(user_daily_budget=40_000, monthly_budget=40_000)
    spent = facts(user_day_spent=40_000, is_admin=True)
    assert isinstance(decide(settings, spent, DEFAULTS), Allowed)
    over = decide(settings, replace(spent, guild_month_spent=40_000), DEFAULTS)
    assert isinstance(over, Denied) and over.code == "policy_guild_budget"
    member = decide(settings, facts(user_day_spent=40_000), DEFAULTS)
    assert isinstance(member, Denied) and member.code == "policy_user_budget"


def test_the_operator_cap_applies_in_servers_and_direct_messages() -> None:
    capped = replace(DEFAULTS, monthly_budget=100_000)
    for guild in (1, None):
        denied = decide(GuildSettings(), facts(guild_id=guild, bot_month_spent=70_000), capped)
        assert isinstance(denied, Denied) and denied.code == "policy_bot_budget"
        assert isinstance(
            decide(GuildSettings(), facts(guild_id=guild, bot_month_spent=60_000), capped), Allowed
        )


def test_budget_settings_are_validated_and_read_back_tolerantly() -> None:
    settings = GuildSettings().with_changes(monthly_budget=5_000_000, user_daily_budget=0)
    assert settings.limits_usage()
    with pytest.raises(SettingsError) as error:
        settings.with_changes(monthly_budget=-1)
    assert error.value.code == "settings_budget_range"
    assert GuildSettings.from_dict({"monthly_budget": "lots"}).monthly_budget == 0
    assert GuildSettings.from_dict(settings.to_dict()) == settings


# --- the usage report --------------------------------------------------------------------------------


def test_the_report_counts_days_models_users_and_failures() -> None:
    days = report_days(date(2026, 12, 6), 3)
    assert days == (date(2026, 12, 4), date(2026, 12, 5), date(2026, 12, 6))
    rows = [
        LedgerRow("2026-12-04", 1, "flux-kontext-pro", 2, 80_000),
        LedgerRow("2026-12-06", 1, "flux-kontext-max", 1, 80_000),
        LedgerRow("2026-12-06", 2, "flux-kontext-pro", 3, 120_000),
        LedgerRow("2026-11-30", 2, "flux-kontext-pro", 9, 360_000),  # outside the days
    ]
    report = summarise(
        rows, days, ["flux-kontext-pro", "flux-kontext-max"], "USD", {"task_failed": 2, "busy": 3}
    )
    assert report.jobs == {"flux-kontext-pro": (2, 0, 3), "flux-kontext-max": (0, 0, 1)}
    assert report.cost == (80_000, 0, 200_000) and report.total_cost == Money(280_000, "USD")
    assert report.total_jobs == 6 and report.jobs_of("flux-kontext-max") == 1
    assert [(u.user_id, u.jobs, u.cost) for u in report.top_users] == [(1, 3, 160_000), (2, 3, 120_000)]
    assert report.failures == (("busy", 3), ("task_failed", 2))
    lines = report.csv().splitlines()
    assert lines[0] == "day,model,jobs,cost_usd"
    assert "2026-12-06,flux-kontext-pro,3,0.12" in lines and len(lines) == 1 + 3 * 2


def test_an_empty_report_has_zero_days() -> None:
    report = summarise([], report_days(date(2026, 12, 6), 7), ["flux-kontext-pro"], "USD", {})
    assert report.cost == (0,) * 7 and report.total_jobs == 0 and report.top_users == ()
