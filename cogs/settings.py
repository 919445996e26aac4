"""`/kontext …`: per-server moderation settings for people with Manage Server (thin Discord glue)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.app_commands import Choice
from discord.app_commands import locale_str as _
from discord.ext import commands

from kontext.adapters.discord.files import release
from kontext.adapters.discord.interactions import is_admin, locale_of
from kontext.adapters.discord.modlog import LogProblem
from kontext.adapters.discord.settings_view import ServerState, blocklist_reply, settings_view
from kontext.adapters.discord.usage_view import report_view
from kontext.domain.costs import MAX_AMOUNT, to_micros
from kontext.domain.generation import MODELS
from kontext.domain.guild_settings import GuildSettings, SettingsError
from kontext.domain.usage import MAX_REPORT_DAYS
from kontext.i18n import error_text, t

if TYPE_CHECKING:
    from kontext.adapters.discord.client import KontextBot

log = logging.getLogger("kontext.cogs.settings")

# Command strings are English here (Discord's default) and translated in kontext/i18n/locale by id (see
# kontext/adapters/discord/translator.py); choices carry an explicit id.
ACTIONS = [
    Choice(name=_("add", key="choice.action.add"), value="add"),
    Choice(name=_("remove", key="choice.action.remove"), value="remove"),
    Choice(name=_("clear", key="choice.action.clear"), value="clear"),
]
MODEL_SETS = [
    Choice(name=_("both", key="choice.models.both"), value="both"),
    Choice(name=_("flux-kontext-pro only", key="choice.models.pro_only"), value="flux-kontext-pro"),
    Choice(name=_("flux-kontext-max only", key="choice.models.max_only"), value="flux-kontext-max"),
]
MODEL_CHOICES = [Choice(name=m, value=m) for m in MODELS]


@app_commands.guild_only()
@app_commands.default_permissions(manage_guild=True)
class SettingsCog(
    commands.GroupCog, group_name="kontext", group_description="Kontext settings for this server"
):
    """Every subcommand is also checked in the bot (admins can re-grant who sees commands)."""

    blocklist = app_commands.Group(name="blocklist", description="Words or patterns refused in prompts")

    def __init__(self, bot: KontextBot) -> None:
        self.bot = bot
        self.moderation = bot.backend.moderation
        self.modlog = bot.backend.modlog
        super().__init__()

    async def interaction_check(self, interaction: discord.Interaction[Any]) -> bool:
        if interaction.guild_id is None or not is_admin(interaction):
            log.info("user %s denied /kontext (no Manage Server)", interaction.user.id)
            await interaction.response.send_message(
                t("settings_need_manage_server", locale_of(interaction)), ephemeral=True
            )
            return False
        return True

    async def _change(self, interaction: discord.Interaction[Any], **changes: Any) -> None:
        assert interaction.guild_id is not None
        locale = locale_of(interaction)
        try:
            updated = await self.moderation.change(interaction.guild_id, **changes)
        except SettingsError as exc:
            await interaction.response.send_message(error_text(exc, locale), ephemeral=True)
            return
        if "log_channel_id" in changes:
            self.modlog.clear_problem(interaction.guild_id)
        log.info(
            "user %s changed /kontext %s in guild %s",
            interaction.user.id,
            sorted(changes),
            interaction.guild_id,
        )
        await self._reply(interaction, updated, t("settings_saved", locale))

    async def _reply(self, interaction: discord.Interaction[Any], s: GuildSettings, title: str) -> None:
        """The settings (and, when they are long, the full lists as a file), privately."""
        assert interaction.guild_id is not None
        locale = locale_of(interaction)
        total, top = await self.moderation.usage_today(interaction.guild_id)
        mine = await self.moderation.personal(interaction.guild_id, interaction.user.id)
        state = ServerState(
            settings=s,
            usage_total=total,
            top_users=top,
            now=self.moderation.clock(),
            bot_default_model=self.bot.settings.default_model,
            bot_default_safety=self.bot.settings.default_safety,
            log_problem=self._log_problem(interaction, s),
            prices=self.bot.settings.prices,
            month_spent=mine.usage.guild_month_spent,
        )
        embed, lists = settings_view(state, locale, title=title)
        try:
            await interaction.response.send_message(
                embed=embed,
                file=lists or discord.utils.MISSING,
                ephemeral=True,
                allowed_mentions=discord.AllowedMentions.none(),
            )
        finally:
            release([lists])

    def _log_problem(self, interaction: discord.Interaction[Any], s: GuildSettings) -> str | None:
        """Why the moderation log cannot be posted, worded for the reader (None when it can)."""
        assert interaction.guild_id is not None
        problem = self.modlog.problems.get(interaction.guild_id)
        if s.log_channel_id and problem is None and interaction.guild is not None:
            channel = interaction.guild.get_channel(s.log_channel_id)
            me = interaction.guild.me
            if channel is None:
                problem = LogProblem.CHANNEL_NOT_FOUND
            elif me is not None:
                perms = channel.permissions_for(me)
                if not (
                    perms.view_channel and perms.send_messages and perms.embed_links and perms.attach_files
                ):
                    problem = LogProblem.MISSING_PERMISSION
        return t(problem.message_key, locale_of(interaction)) if problem else None

    @app_commands.command(name="show", description="Show every setting and today's usage")
    async def show(self, interaction: discord.Interaction[Any]) -> None:
        assert interaction.guild_id is not None
        s = await self.moderation.settings(interaction.guild_id)
        await self._reply(interaction, s, t("show_title", locale_of(interaction)))

    @app_commands.command(
        name="safety", description="Safety tolerance in ordinary channels (0 strictest … 6)"
    )
    @app_commands.describe(value="Safety tolerance: 0 (strictest) to 6 (most permissive)")
    async def safety(
        self, interaction: discord.Interaction[Any], value: app_commands.Range[int, 0, 6]
    ) -> None:
        await self._change(interaction, safety=value)

    @app_commands.command(
        name="nsfw-safety", description="Safety tolerance in age-restricted channels only (0 … 6)"
    )
    @app_commands.describe(value="Tolerance in age-restricted channels: 0 (strictest) to 6 (most permissive)")
    async def nsfw_safety(
        self, interaction: discord.Interaction[Any], value: app_commands.Range[int, 0, 6]
    ) -> None:
        await self._change(interaction, nsfw_safety=value)

    @app_commands.command(name="models", description="Which models may be used, and the default")
    @app_commands.describe(
        allowed="Models people may use on this server",
        default="Model used when someone does not pick one (must be allowed)",
    )
    @app_commands.choices(allowed=MODEL_SETS, default=MODEL_CHOICES)
    async def models(
        self, interaction: discord.Interaction[Any], allowed: Choice[str], default: Choice[str] | None = None
    ) -> None:
        models = list(MODELS) if allowed.value == "both" else [allowed.value]
        changes: dict[str, Any] = {"allowed_models": models}
        if default is not None:
            changes["default_model"] = default.value
        await self._change(interaction, **changes)

    @app_commands.command(
        name="channels", description="Channels where the bot may be used (empty = everywhere)"
    )
    @app_commands.describe(
        action="Add or remove a channel, or clear the list", channel="The channel to add or remove"
    )
    @app_commands.choices(action=ACTIONS)
    async def channels(
        self,
        interaction: discord.Interaction[Any],
        action: Choice[str],
        channel: discord.TextChannel | None = None,
    ) -> None:
        await self._edit_ids(interaction, "channels", action.value, channel)

    @app_commands.command(name="roles", description="Roles that may use the bot (empty = everyone)")
    @app_commands.describe(action="Add or remove a role, or clear the list", role="The role to add or remove")
    @app_commands.choices(action=ACTIONS)
    async def roles(
        self, interaction: discord.Interaction[Any], action: Choice[str], role: discord.Role | None = None
    ) -> None:
        await self._edit_ids(interaction, "roles", action.value, role)

    async def _edit_ids(
        self,
        interaction: discord.Interaction[Any],
        field: str,
        action: str,
        item: discord.abc.Snowflake | None,
    ) -> None:
        """Add to, remove from or clear an allow-list of ids (``channels`` or ``roles``)."""
        current: list[int] = getattr(await self.moderation.settings(interaction.guild_id or 0), field)
        if action == "clear":
            updated: list[int] = []
        elif item is None:
            await interaction.response.send_message(
                t("settings_need_item", locale_of(interaction)), ephemeral=True
            )
            return
        elif action == "add":
            updated = current if item.id in current else [*current, item.id]
        else:
            updated = [x for x in current if x != item.id]
        await self._change(interaction, **{field: updated})

    @app_commands.command(name="cooldown", description="Seconds a user must wait between requests (0 = off)")
    @app_commands.describe(seconds="Minimum seconds between two requests of one user (0 turns it off)")
    async def cooldown(
        self, interaction: discord.Interaction[Any], seconds: app_commands.Range[int, 0, 86400]
    ) -> None:
        await self._change(interaction, cooldown_s=seconds)

    @app_commands.command(
        name="quota", description="Jobs per day (UTC) per user and per server (0 = unlimited)"
    )
    @app_commands.describe(
        user="Jobs per user per day (0 = unlimited)",
        server="Jobs for the whole server per day (0 = unlimited)",
    )
    async def quota(
        self,
        interaction: discord.Interaction[Any],
        user: app_commands.Range[int, 0, 100000] | None = None,
        server: app_commands.Range[int, 0, 100000] | None = None,
    ) -> None:
        changes = {
            k: v for k, v in (("user_daily_quota", user), ("guild_daily_quota", server)) if v is not None
        }
        await self._change(interaction, **changes)

    @app_commands.command(
        name="budget", description="Spending caps: per month for the server, per day for each member"
    )
    @app_commands.describe(
        monthly="Most this server may spend per calendar month (UTC), in the bot's currency; 0 = no cap",
        user_daily="Most one member may spend per day (UTC), in the bot's currency; 0 = no cap",
    )
    @app_commands.rename(user_daily="user-daily")
    async def budget(
        self,
        interaction: discord.Interaction[Any],
        monthly: app_commands.Range[float, 0, MAX_AMOUNT] | None = None,
        user_daily: app_commands.Range[float, 0, MAX_AMOUNT] | None = None,
    ) -> None:
        changes = {
            name: to_micros(value)
            for name, value in (("monthly_budget", monthly), ("user_daily_budget", user_daily))
            if value is not None
        }
        await self._change(interaction, **changes)

    @app_commands.command(name="usage", description="Jobs and spending of the last days, as a chart")
    @app_commands.describe(days="How many days to show, today included (1-90, default 30)")
    async def usage(
        self, interaction: discord.Interaction[Any], days: app_commands.Range[int, 1, MAX_REPORT_DAYS] = 30
    ) -> None:
        assert interaction.guild_id is not None
        locale = locale_of(interaction)
        await interaction.response.defer(ephemeral=True, thinking=True)
        report = await self.bot.backend.usage.report(interaction.guild_id, days)
        chart = await self.bot.backend.usage_chart(report, locale)
        embed, files = report_view(report, locale, chart=chart)
        log.info(
            "user %s read %d day(s) of usage in guild %s", interaction.user.id, days, interaction.guild_id
        )
        try:
            await interaction.followup.send(
                embed=embed, files=files, ephemeral=True, allowed_mentions=discord.AllowedMentions.none()
            )
        finally:
            release(files)

    @app_commands.command(
        name="log-channel", description="Channel for the moderation log (omit to turn it off)"
    )
    @app_commands.describe(channel="Where to post the log; leave it empty to turn the log off")
    async def log_channel(
        self, interaction: discord.Interaction[Any], channel: discord.TextChannel | None = None
    ) -> None:
        await self._change(interaction, log_channel_id=channel.id if channel else None)

    @app_commands.command(name="reset", description="Reset every setting of this server to the defaults")
    async def reset(self, interaction: discord.Interaction[Any]) -> None:
        assert interaction.guild_id is not None
        updated = await self.moderation.reset(interaction.guild_id)
        self.modlog.clear_problem(interaction.guild_id)
        log.info("user %s reset /kontext settings in guild %s", interaction.user.id, interaction.guild_id)
        await self._reply(interaction, updated, t("settings_reset", locale_of(interaction)))

    @blocklist.command(
        name="add", description="Refuse prompts containing this word or pattern (* = anything)"
    )
    @app_commands.describe(entry='Word or pattern; * matches anything, "quotes" match whole words only')
    async def blocklist_add(
        self, interaction: discord.Interaction[Any], entry: app_commands.Range[str, 1, 100]
    ) -> None:
        current = (await self.moderation.settings(interaction.guild_id or 0)).blocklist
        await self._change(interaction, blocklist=[*current, entry])

    @blocklist.command(name="remove", description="Remove a block-list entry")
    @app_commands.describe(entry="The entry to remove, as /kontext blocklist list shows it")
    async def blocklist_remove(self, interaction: discord.Interaction[Any], entry: str) -> None:
        current = (await self.moderation.settings(interaction.guild_id or 0)).blocklist
        wanted = entry.strip().casefold()
        await self._change(interaction, blocklist=[e for e in current if e.casefold() != wanted])

    @blocklist.command(name="list", description="Show the block-list")
    async def blocklist_list(self, interaction: discord.Interaction[Any]) -> None:
        entries = (await self.moderation.settings(interaction.guild_id or 0)).blocklist
        text, whole = blocklist_reply(entries, locale_of(interaction))
        try:
            await interaction.response.send_message(
                text,
                file=whole or discord.utils.MISSING,
                ephemeral=True,
                allowed_mentions=discord.AllowedMentions.none(),
            )
        finally:
            release([whole])


async def setup(bot: KontextBot) -> None:
    await bot.add_cog(SettingsCog(bot))
