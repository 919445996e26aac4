"""`/usage`: a member's own edits today, quota left, cooldown and spending, privately (thin glue)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from kontext.adapters.discord.interactions import locale_of
from kontext.adapters.discord.usage_view import personal_view

if TYPE_CHECKING:
    from kontext.adapters.discord.client import KontextBot

log = logging.getLogger("kontext.cogs.usage")


class UsageCog(commands.Cog):
    def __init__(self, bot: KontextBot) -> None:
        self.bot = bot

    @app_commands.command(
        name="usage", description="Your edits today, what is left of your limits, and what an edit costs"
    )
    @app_commands.guild_only()
    async def usage(self, interaction: discord.Interaction[Any]) -> None:
        assert interaction.guild_id is not None
        mine = await self.bot.backend.moderation.personal(interaction.guild_id, interaction.user.id)
        log.info("user %s asked for their usage in guild %s", interaction.user.id, interaction.guild_id)
        await interaction.response.send_message(
            embed=personal_view(mine, self.bot.settings.prices, locale_of(interaction)),
            ephemeral=True,
            allowed_mentions=discord.AllowedMentions.none(),
        )


async def setup(bot: KontextBot) -> None:
    await bot.add_cog(UsageCog(bot))
