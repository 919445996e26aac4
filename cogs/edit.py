"""`/edit`, `/imagine`, the "Edit image" message command and the result buttons (thin Discord glue)."""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.app_commands import Choice
from discord.app_commands import locale_str as _
from discord.ext import commands

from kontext.adapters.discord.interactions import first_image, locale_of, report_unexpected
from kontext.domain.generation import DEFAULT_EDIT_SIZE, SIZES
from kontext.domain.jobs import JobKind, JobRecord
from kontext.i18n import t
from kontext.services.intake import MAX_PROMPT_CHARS, EditOptions

if TYPE_CHECKING:
    from kontext.adapters.discord.client import KontextBot

log = logging.getLogger("kontext.cogs.edit")

# Command strings are English here (Discord's default) and translated in kontext/i18n/locale by id (see
# kontext/adapters/discord/translator.py); strings shared by /edit and /imagine carry one explicit id.
MODEL_CHOICES = [
    Choice(name="Flux Kontext Pro", value="flux-kontext-pro"),
    Choice(name=_("Flux Kontext Max (higher quality)", key="choice.model.max"), value="flux-kontext-max"),
]
#: Sizes shown as words (the ratios read the same in every language).
SIZE_NAMES = {
    DEFAULT_EDIT_SIZE: _("match input", key="choice.aspect.match_input"),
    "auto": _("auto", key="choice.aspect.auto"),
}
ASPECT_CHOICES = [Choice(name=SIZE_NAMES.get(s, s), value=s) for s in SIZES]
FORMAT_CHOICES = [Choice(name="PNG", value="png"), Choice(name="JPEG", value="jpg")]
OPTION_DESCRIPTIONS = {
    "model": _("Pro is faster and cheaper, Max gives higher quality", key="option.model.description"),
    "format": _("Output file format (default PNG)", key="option.format.description"),
    "enhance": _("Let the model expand your prompt (prompt upsampling)", key="option.enhance.description"),
    "safety": _(
        "Ask for a stricter safety filter (0 strictest … 6); never looser than the server allows",
        key="option.safety.description",
    ),
}

PromptHandler = Callable[[discord.Interaction[Any], str], Awaitable[None]]


def options_from(
    prompt: str,
    model: Choice[str] | None,
    aspect: Choice[str] | None,
    format: Choice[str] | None,
    enhance: bool,
    safety: int | None,
) -> EditOptions:
    """The request options from the slash-command arguments."""
    return EditOptions(
        prompt=prompt,
        model=model.value if model else None,
        size=aspect.value if aspect else None,
        response_format=format.value if format else "png",
        enhance=enhance,
        safety=safety,
    )


class PromptModal(discord.ui.Modal):
    """Asks for a prompt, then hands it to ``on_prompt``."""

    prompt: discord.ui.TextInput[Any]

    def __init__(self, locale: str, on_prompt: PromptHandler) -> None:
        super().__init__(title=t("edit_again_title", locale), timeout=600)
        self.on_prompt = on_prompt
        self.prompt = discord.ui.TextInput(
            label=t("edit_prompt_label", locale),
            style=discord.TextStyle.paragraph,
            max_length=MAX_PROMPT_CHARS,
        )
        self.add_item(self.prompt)

    async def on_submit(self, interaction: discord.Interaction[Any]) -> None:
        await self.on_prompt(interaction, self.prompt.value)

    async def on_error(self, interaction: discord.Interaction[Any], error: Exception, /) -> None:  # type: ignore[override]
        await report_unexpected(interaction, error)


#: action -> (label key, emoji, style)
BUTTONS = {
    "reroll": ("button_reroll", "🎲", discord.ButtonStyle.secondary),
    "again": ("button_edit_again", "✏️", discord.ButtonStyle.secondary),
    "delete": ("button_delete", "🗑️", discord.ButtonStyle.danger),
}


class JobButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"kx:(?P<action>reroll|again|delete):(?P<job>[0-9a-f]{8,32})",
):
    """A result button; the action and job id live in the custom_id, so it works after a restart."""

    def __init__(self, action: str, job_id: str, locale: str | None = None) -> None:
        label, emoji, style = BUTTONS[action]
        button: discord.ui.Button[Any] = discord.ui.Button(
            label=t(label, locale), emoji=emoji, style=style, custom_id=f"kx:{action}:{job_id}"
        )
        super().__init__(button)
        self.action = action
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: Any, match: re.Match[str]
    ) -> JobButton:
        return cls(match["action"], match["job"])

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        try:
            cog = interaction.client.get_cog("EditCog")
            assert isinstance(cog, EditCog)
            handler = {"reroll": cog.reroll, "again": cog.edit_again, "delete": cog.delete_result}[
                self.action
            ]
            await handler(interaction, self.job_id)
        except Exception as exc:  # noqa: BLE001 - discord.py would only log it; the user must hear back
            await report_unexpected(interaction, exc)


def result_view(job: JobRecord) -> discord.ui.View:
    """Re-roll, Edit again and Delete under a result."""
    view = discord.ui.View(timeout=None)
    for action in BUTTONS:
        view.add_item(JobButton(action, job.id, job.locale))
    return view


class EditCog(commands.Cog):
    """The user-facing commands; all decisions are made by the intake and the runner."""

    def __init__(self, bot: KontextBot) -> None:
        self.bot = bot
        self.interactions = bot.backend.interactions
        self.runner = bot.backend.runner
        self.menu = app_commands.ContextMenu(name="Edit image", callback=self.edit_message_image)

    async def cog_load(self) -> None:
        # offered in DMs only where they can work there (ALLOW_DMS); servers always
        contexts = app_commands.AppCommandContext(guild=True, dm_channel=self.bot.settings.allow_dms)
        for command in (self.edit, self.imagine, self.menu):
            command.allowed_contexts = contexts
        self.bot.tree.add_command(self.menu)
        self.bot.add_dynamic_items(JobButton)
        self.bot.result_view_factory = result_view

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self.menu.name, type=self.menu.type)
        self.bot.remove_dynamic_items(JobButton)

    @app_commands.command(name="edit", description="Edit an image with AI: attach it and say what to change")
    @app_commands.describe(
        image="The picture to edit (PNG, JPEG, WebP, GIF, BMP)",
        prompt="What to change, e.g. 'make the hair blue'",
        aspect="Output aspect ratio (default: match the input)",
        **OPTION_DESCRIPTIONS,
    )
    @app_commands.choices(model=MODEL_CHOICES, aspect=ASPECT_CHOICES, format=FORMAT_CHOICES)
    async def edit(
        self,
        interaction: discord.Interaction[Any],
        image: discord.Attachment,
        prompt: app_commands.Range[str, 1, MAX_PROMPT_CHARS],
        model: Choice[str] | None = None,
        aspect: Choice[str] | None = None,
        format: Choice[str] | None = None,
        enhance: bool = False,
        safety: app_commands.Range[int, 0, 6] | None = None,
    ) -> None:
        options = options_from(prompt, model, aspect, format, enhance, safety)
        await self.interactions.submit(interaction, options, kind=JobKind.EDIT, attachment=image)

    @app_commands.command(name="imagine", description="Create an image from a text prompt")
    @app_commands.describe(
        prompt="What to draw", aspect="Output aspect ratio (default 16:9)", **OPTION_DESCRIPTIONS
    )
    @app_commands.choices(
        model=MODEL_CHOICES,
        aspect=[c for c in ASPECT_CHOICES if c.value != DEFAULT_EDIT_SIZE],
        format=FORMAT_CHOICES,
    )
    async def imagine(
        self,
        interaction: discord.Interaction[Any],
        prompt: app_commands.Range[str, 1, MAX_PROMPT_CHARS],
        model: Choice[str] | None = None,
        aspect: Choice[str] | None = None,
        format: Choice[str] | None = None,
        enhance: bool = False,
        safety: app_commands.Range[int, 0, 6] | None = None,
    ) -> None:
        options = options_from(prompt, model, aspect, format, enhance, safety)
        await self.interactions.submit(interaction, options, kind=JobKind.IMAGINE)

    async def edit_message_image(
        self, interaction: discord.Interaction[Any], message: discord.Message
    ) -> None:
        """Message command: edit the first image of a message after asking for a prompt."""
        attachment = first_image(message)
        if attachment is None:
            await self.interactions.refuse(interaction, t("no_image_in_message", locale_of(interaction)))
            return

        async def on_prompt(modal_interaction: discord.Interaction[Any], prompt: str) -> None:
            await self.interactions.submit(
                modal_interaction, EditOptions(prompt=prompt), kind=JobKind.EDIT, attachment=attachment
            )

        await interaction.response.send_modal(PromptModal(locale_of(interaction), on_prompt))

    # --- result buttons ---------------------------------------------------------------------------

    async def _parent(self, interaction: discord.Interaction[Any], job_id: str) -> JobRecord | None:
        job = await self.runner.find_job(job_id)
        if job is None:
            await self.interactions.refuse(interaction, t("job_gone", locale_of(interaction)))
        return job

    async def reroll(self, interaction: discord.Interaction[Any], job_id: str) -> None:
        parent = await self._parent(interaction, job_id)
        if parent is None:
            return
        if parent.kind is JobKind.EDIT and not (parent.input_url or parent.input_ref):
            await self.interactions.refuse(interaction, t("job_gone", locale_of(interaction)))
            return
        options = EditOptions(
            prompt=parent.prompt,
            model=parent.model,
            size=parent.size,
            response_format=parent.response_format,
            enhance=parent.prompt_upsampling,
            safety=parent.safety_tolerance,
        )
        await self.interactions.submit(
            interaction,
            options,
            kind=parent.kind,
            input_url=parent.input_url,
            input_filename=parent.input_filename,
            input_ref=parent.input_ref,
            parent_job_id=parent.id,
        )

    async def edit_again(self, interaction: discord.Interaction[Any], job_id: str) -> None:
        parent = await self._parent(interaction, job_id)
        if parent is None:
            return
        source = parent.result_attachment_url
        if interaction.message is not None:
            attachment = first_image(interaction.message)
            source = attachment.url if attachment else source
        if not source:
            await self.interactions.refuse(interaction, t("job_gone", locale_of(interaction)))
            return

        async def on_prompt(modal_interaction: discord.Interaction[Any], prompt: str) -> None:
            options = EditOptions(
                prompt=prompt,
                model=parent.model,
                response_format=parent.response_format,
                safety=parent.safety_tolerance,
            )
            await self.interactions.submit(
                modal_interaction, options, kind=JobKind.EDIT, input_url=source, parent_job_id=parent.id
            )

        await interaction.response.send_modal(PromptModal(locale_of(interaction), on_prompt))

    async def delete_result(self, interaction: discord.Interaction[Any], job_id: str) -> None:
        job = await self.runner.find_job(job_id)
        is_moderator = interaction.permissions.manage_messages
        if not is_moderator and (job is None or job.user_id != interaction.user.id):
            await self.interactions.refuse(interaction, t("not_yours", locale_of(interaction)))
            return
        await interaction.response.defer()
        try:
            await interaction.delete_original_response()
        except discord.HTTPException as exc:
            log.warning("could not delete result of job %s: %s %s", job_id, exc.status, exc.code)


async def setup(bot: KontextBot) -> None:
    await bot.add_cog(EditCog(bot))
