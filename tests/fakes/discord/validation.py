"""Payload validation against Discord's documented limits.

Each function returns a list of form errors (path, code, message) that :func:`.errors.form_error` turns into
Discord's 400 Invalid Form Body (50035) answer, so a bot's mistakes fail like they would in production.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .errors import FormError
from .models import SELECT_TYPES, MessageFlags
from .util import walk_components

#: Discord's locales (``AvailableLocalesEnum`` of its OpenAPI spec).
VALID_LOCALES = frozenset(
    "ar bg cs da de el en-GB en-US es-419 es-ES fi fr he hi hr hu id it ja ko lt nl no pl pt-BR ro ru sv-SE "
    "th tr uk vi zh-CN zh-TW".split()
)
#: Combined characters of a chat command's names, descriptions and choice names/values, counting the longest
#: localization of each field (Discord's documented limit).
MAX_COMMAND_CHARACTERS = 8000
_URL_SCHEMES = ("http://", "https://", "attachment://")


# ----------------------------------------------------------------------------------------- commands


def validate_commands(cmds: list[Any]) -> list[FormError]:
    """A bulk-overwrite body (``PUT …/commands``): names, descriptions, options, counts."""
    errs: list[FormError] = []
    seen: set[tuple[str, int]] = set()
    counts: dict[int, int] = {}
    for i, cmd in enumerate(cmds):
        p = str(i)
        if not isinstance(cmd, dict) or "name" not in cmd:
            errs.append((f"{p}.name", "BASE_TYPE_REQUIRED", "This field is required"))
            continue
        ctype = cmd.get("type", 1)
        counts[ctype] = counts.get(ctype, 0) + 1
        if (cmd["name"], ctype) in seen:
            errs.append(
                (p, "APPLICATION_COMMANDS_DUPLICATE_NAME", "Application command names must be unique")
            )
        seen.add((cmd["name"], ctype))
        errs += validate_names(p, cmd, chat=ctype == 1)
        if ctype != 1 and cmd.get("description"):
            errs.append((f"{p}.description", "BASE_TYPE_MAX_LENGTH", "Must be 0 or fewer in length."))
        errs += validate_options(f"{p}.options", cmd.get("options") or [], depth=0)
        if ctype == 1 and command_size(cmd) > MAX_COMMAND_CHARACTERS:
            errs.append((p, "APPLICATION_COMMAND_TOO_LARGE", "Command exceeds maximum size (8000)"))
    if counts.get(1, 0) > 100:
        errs.append(("", "BASE_TYPE_MAX_LENGTH", "Must be 100 or fewer in length."))
    for ctype in counts:
        same_type = [c for c in cmds if isinstance(c, dict) and c.get("type", 1) == ctype]
        errs += [
            ("", "APPLICATION_COMMANDS_DUPLICATE_NAME", f"Application command names must be unique ({loc})")
            for loc in _localized_duplicates(same_type)
        ]
    for t in (2, 3):
        if counts.get(t, 0) > 15:
            errs.append(("", "APPLICATION_COMMANDS_TOO_MANY", "Too many context menu commands."))
    return errs


def _longest(obj: Mapping[str, Any], key: str) -> int:
    values = [obj.get(key) or "", *(obj.get(f"{key}_localizations") or {}).values()]
    return max(len(str(v)) for v in values)


def command_size(obj: Mapping[str, Any]) -> int:
    """Characters of names, descriptions and choices, the longest localization of each field counted."""
    total = _longest(obj, "name") + _longest(obj, "description")
    for choice in obj.get("choices") or []:
        total += _longest(choice, "name") + len(str(choice.get("value", "")))
    return total + sum(command_size(option) for option in obj.get("options") or [])


def _localized_duplicates(options: list[dict[str, Any]]) -> list[str]:
    """Locales in which two sibling options show the same name (a missing localization shows the default)."""
    locales = {loc for opt in options for loc in (opt.get("name_localizations") or {})}
    clashes = []
    for loc in sorted(locales):
        shown = [(opt.get("name_localizations") or {}).get(loc, opt.get("name")) for opt in options]
        if len(shown) != len(set(shown)):
            clashes.append(loc)
    return clashes


def _name_ok(name: Any, chat: bool) -> bool:
    if not isinstance(name, str) or not 1 <= len(name) <= 32:
        return False
    if not chat:
        return True
    return re.fullmatch(r"[-_'\w]+", name) is not None and name == name.lower()


def validate_names(p: str, obj: Mapping[str, Any], *, chat: bool) -> list[FormError]:
    errs: list[FormError] = []
    if not _name_ok(obj.get("name"), chat):
        errs.append((f"{p}.name", "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid"))
    if chat:
        desc = obj.get("description", "")
        if not isinstance(desc, str) or not 1 <= len(desc) <= 100:
            errs.append((f"{p}.description", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length."))
    for key in ("name_localizations", "description_localizations"):
        for loc, value in (obj.get(key) or {}).items():
            if loc not in VALID_LOCALES:
                errs.append(
                    (
                        f"{p}.{key}.{loc}",
                        "BASE_TYPE_CHOICES",
                        f"Value must be one of {sorted(VALID_LOCALES)}.",
                    )
                )
            elif key == "name_localizations" and not _name_ok(value, chat):
                errs.append(
                    (f"{p}.{key}.{loc}", "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid")
                )
            elif key == "description_localizations" and chat and not 1 <= len(value) <= 100:
                errs.append(
                    (f"{p}.{key}.{loc}", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length.")
                )
    return errs


def validate_options(p: str, options: list[dict[str, Any]], depth: int) -> list[FormError]:
    errs: list[FormError] = []
    if len(options) > 25:
        errs.append((p, "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length."))
    errs += [
        (p, "APPLICATION_COMMAND_OPTIONS_NAME_ALREADY_EXISTS", f"Option names must be unique ({loc})")
        for loc in _localized_duplicates(options)
    ]
    names: set[str] = set()
    optional_seen = False
    for j, opt in enumerate(options):
        q = f"{p}.{j}"
        otype = opt.get("type")
        errs += validate_names(q, opt, chat=True)
        if opt.get("name") in names:
            errs.append((q, "APPLICATION_COMMAND_OPTIONS_NAME_ALREADY_EXISTS", "Option names must be unique"))
        names.add(opt.get("name", ""))
        if otype in (1, 2):
            if depth >= (1 if otype == 2 else 2):
                errs.append((q, "APPLICATION_COMMAND_OPTIONS_TYPE_INVALID", "Sub-command nesting too deep"))
            errs += validate_options(f"{q}.options", opt.get("options") or [], depth + 1)
            continue
        if opt.get("required") and optional_seen:
            errs.append(
                (
                    q,
                    "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID",
                    "Required options must be placed before non-required options",
                )
            )
        optional_seen = optional_seen or not opt.get("required")
        errs += _validate_value_option(q, opt)
    return errs


def _validate_value_option(q: str, opt: Mapping[str, Any]) -> list[FormError]:
    """Type and choices of an option that is not a subcommand (group)."""
    errs: list[FormError] = []
    if opt.get("type") not in (3, 4, 5, 6, 7, 8, 9, 10, 11):
        errs.append((f"{q}.type", "BASE_TYPE_CHOICES", "Value must be one of (1..11)."))
    choices = opt.get("choices") or []
    if len(choices) > 25:
        errs.append((f"{q}.choices", "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length."))
    if choices and opt.get("autocomplete"):
        errs.append((q, "APPLICATION_COMMAND_OPTION_CHOICES_AUTOCOMPLETE", "Autocomplete and choices"))
    for k, choice in enumerate(choices):
        errs += _validate_choice(f"{q}.choices.{k}", choice)
    return errs


def _validate_choice(p: str, choice: Mapping[str, Any]) -> list[FormError]:
    """A choice: a name of 1-100 characters, localized the same way, in known locales."""
    errs: list[FormError] = []
    names = {"": choice.get("name"), **(choice.get("name_localizations") or {})}
    for loc, name in names.items():
        path = f"{p}.name_localizations.{loc}" if loc else f"{p}.name"
        if loc and loc not in VALID_LOCALES:
            errs.append((path, "BASE_TYPE_CHOICES", f"Value must be one of {sorted(VALID_LOCALES)}."))
        elif not isinstance(name, str) or not 1 <= len(name) <= 100:
            errs.append((path, "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length."))
    return errs


# ----------------------------------------------------------------------------------------- messages


def validate_message_body(body: Mapping[str, Any], flags: int) -> list[FormError]:
    """A message create/edit body: content, embeds, components (legacy or components v2)."""
    errs: list[FormError] = []
    content = body.get("content")
    if content is not None and not isinstance(content, str):
        errs.append(("content", "BASE_TYPE_STRING", "Must be a string."))
    elif content is not None and len(content) > 2000:
        errs.append(("content", "BASE_TYPE_MAX_LENGTH", "Must be 2000 or fewer in length."))
    embeds = body.get("embeds")
    if embeds is not None:
        if len(embeds) > 10:
            errs.append(("embeds", "BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer in length."))
        total = sum(_validate_embed(f"embeds.{i}", e, errs) for i, e in enumerate(embeds))
        if total > 6000:
            errs.append(("embeds", "MAX_EMBED_SIZE_EXCEEDED", "Embed size exceeds maximum size of 6000"))
    components = body.get("components")
    if components is not None:
        errs += validate_components(components, v2=bool(flags & MessageFlags.IS_COMPONENTS_V2))
    if flags & MessageFlags.IS_COMPONENTS_V2 and (body.get("content") or body.get("embeds")):
        errs.append(
            (
                "content",
                "MESSAGE_CANNOT_USE_LEGACY_FIELDS_WITH_COMPONENTS_V2",
                "The 'content' and 'embeds' fields cannot be used with IS_COMPONENTS_V2",
            )
        )
    return errs


def _validate_embed(p: str, e: Mapping[str, Any], errs: list[FormError]) -> int:
    """Check one embed (appending to ``errs``); returns its size toward the 6000-character total."""

    def check_len(path: str, value: Any, limit: int) -> int:
        if value is None:
            return 0
        if len(str(value)) > limit:
            errs.append((path, "BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer in length."))
        return len(str(value))

    total = check_len(f"{p}.title", e.get("title"), 256)
    total += check_len(f"{p}.description", e.get("description"), 4096)
    total += check_len(f"{p}.footer.text", (e.get("footer") or {}).get("text"), 2048)
    total += check_len(f"{p}.author.name", (e.get("author") or {}).get("name"), 256)
    fields = e.get("fields") or []
    if len(fields) > 25:
        errs.append((f"{p}.fields", "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length."))
    for k, f in enumerate(fields):
        for key, limit in (("name", 256), ("value", 1024)):
            if not f.get(key):
                errs.append((f"{p}.fields.{k}.{key}", "BASE_TYPE_REQUIRED", "This field is required"))
            total += check_len(f"{p}.fields.{k}.{key}", f.get(key), limit)
    urls = [("url", e.get("url"))]
    urls += [(f"{key}.url", (e.get(key) or {}).get("url")) for key in ("image", "thumbnail", "video")]
    urls.append(("author.url", (e.get("author") or {}).get("url")))
    urls.append(("author.icon_url", (e.get("author") or {}).get("icon_url")))
    urls.append(("footer.icon_url", (e.get("footer") or {}).get("icon_url")))
    errs += [
        (f"{p}.{path}", "URL_TYPE_INVALID_URL", "Not a well formed URL.")
        for path, url in urls
        if url is not None and not str(url).startswith(_URL_SCHEMES)
    ]
    color = e.get("color")
    if color is not None and not 0 <= int(color) <= 0xFFFFFF:
        errs.append((f"{p}.color", "NUMBER_TYPE_MAX", "int value should be <= 16777215."))
    return total


def validate_components(components: list[dict[str, Any]], *, v2: bool) -> list[FormError]:
    errs: list[FormError] = []
    if not v2:
        errs += _validate_action_rows(components)
    elif sum(1 for _ in walk_components(components)) > 40:
        errs.append(
            ("components", "COMPONENT_MAX_TOTAL_COMPONENTS_EXCEEDED", "Too many components (max 40).")
        )
    seen: set[str] = set()
    for comp in walk_components(components):
        errs += _validate_component(comp, seen)
    return errs


def _validate_action_rows(components: list[dict[str, Any]]) -> list[FormError]:
    """Legacy layout: at most 5 action rows of 1–5 components, a select alone in its row."""
    errs: list[FormError] = []
    if len(components) > 5:
        errs.append(("components", "BASE_TYPE_MAX_LENGTH", "Must be 5 or fewer in length."))
    for i, row in enumerate(components):
        if row.get("type") != 1:
            errs.append((f"components.{i}.type", "UNION_TYPE_CHOICES", "Value of field 'type' must be 1."))
            continue
        children = row.get("components") or []
        if not 1 <= len(children) <= 5:
            errs.append(
                (f"components.{i}.components", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 5 in length.")
            )
        if any(c.get("type") in SELECT_TYPES for c in children) and len(children) > 1:
            errs.append(
                (
                    f"components.{i}.components",
                    "COMPONENT_LAYOUT_WIDTH_EXCEEDED",
                    "The specified component exceeds the maximum width",
                )
            )
    return errs


def _validate_component(comp: Mapping[str, Any], seen: set[str]) -> list[FormError]:
    """One component: custom_id length and uniqueness (``seen``), buttons, select options."""
    errs: list[FormError] = []
    ctype = comp.get("type")
    cid = comp.get("custom_id")
    if cid is not None:
        if not 1 <= len(cid) <= 100:
            errs.append(
                ("components", "BASE_TYPE_BAD_LENGTH", "custom_id must be between 1 and 100 in length.")
            )
        if cid in seen:
            errs.append(
                ("components", "COMPONENT_CUSTOM_ID_DUPLICATED", f"Component custom id {cid!r} is duplicated")
            )
        seen.add(cid)
    if ctype == 2:
        errs += _validate_button(comp)
    elif ctype == 3 and len(comp.get("options") or []) > 25:
        errs.append(("components", "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length."))
    return errs


def _validate_button(comp: Mapping[str, Any]) -> list[FormError]:
    errs: list[FormError] = []
    style, cid = comp.get("style"), comp.get("custom_id")
    if style == 5 and (not comp.get("url") or cid is not None):
        errs.append(("components", "BUTTON_COMPONENT_URL_REQUIRED", "A link button needs url, no custom_id"))
    elif style == 6 and not comp.get("sku_id"):
        errs.append(("components", "BUTTON_COMPONENT_SKU_ID_REQUIRED", "A premium button needs sku_id"))
    elif style not in (5, 6) and cid is None:
        errs.append(("components", "BUTTON_COMPONENT_CUSTOM_ID_REQUIRED", "A button needs a custom_id"))
    if len(comp.get("label") or "") > 80:
        errs.append(("components", "BASE_TYPE_MAX_LENGTH", "Must be 80 or fewer in length."))
    return errs


def validate_modal(data: Mapping[str, Any]) -> list[FormError]:
    """The ``data`` of a MODAL (9) interaction callback."""
    errs: list[FormError] = []
    title = data.get("title")
    if not title or len(title) > 45:
        errs.append(("data.title", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 45 in length."))
    cid = data.get("custom_id")
    if not cid or len(cid) > 100:
        errs.append(("data.custom_id", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length."))
    comps = data.get("components") or []
    if not 1 <= len(comps) <= 5:
        errs.append(("data.components", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 5 in length."))
    for i, comp in enumerate(comps):
        inner = (
            comp.get("components", [None])[0]
            if comp.get("type") == 1
            else comp.get("component")
            if comp.get("type") == 18
            else comp
        )
        if inner is None:
            errs.append((f"data.components.{i}", "BASE_TYPE_REQUIRED", "This field is required"))
            continue
        label = comp.get("label") if comp.get("type") == 18 else inner.get("label")
        if inner.get("type") == 4:
            if not label or len(label) > 45:
                errs.append(
                    (
                        f"data.components.{i}.label",
                        "BASE_TYPE_BAD_LENGTH",
                        "Must be between 1 and 45 in length.",
                    )
                )
            if int(inner.get("max_length") or 4000) > 4000:
                errs.append(
                    (f"data.components.{i}.max_length", "NUMBER_TYPE_MAX", "int value should be <= 4000.")
                )
    return errs
