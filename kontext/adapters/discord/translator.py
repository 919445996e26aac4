"""Simplified Chinese names and descriptions for the slash commands (Discord shows them by user locale).

discord.py passes every command, option and choice string through :meth:`KontextTranslator.translate`
at sync time; strings without an entry stay English.
"""

from __future__ import annotations

import discord
from discord import app_commands

ZH_CN: dict[str, str] = {
    # /edit
    "edit": "编辑图片",
    "Edit an image with AI: attach it and say what to change": "用 AI 编辑图片：上传图片并描述要修改的内容",
    "image": "图片",
    "The picture to edit (PNG, JPEG, WebP, GIF, BMP)": "要编辑的图片（PNG、JPEG、WebP、GIF、BMP）",
    "prompt": "提示词",
    "What to change, e.g. 'make the hair blue'": "要修改什么，例如“把头发变成蓝色”",
    "model": "模型",
    "Pro is faster and cheaper, Max gives higher quality": "Pro 更快更便宜，Max 质量更高",
    "aspect": "比例",
    "Output aspect ratio (default: match the input)": "输出宽高比（默认与输入一致）",
    "format": "格式",
    "Output file format (default PNG)": "输出文件格式（默认 PNG）",
    "enhance": "增强提示词",
    "Let the model expand your prompt (prompt upsampling)": "让模型扩展你的提示词",
    "safety": "安全等级",
    "Ask for a stricter safety filter (0 strictest … 6); never looser than the server allows": (
        "要求更严格的安全过滤（0 最严格 … 6），不会比服务器设置更宽松"
    ),
    "match input": "与输入一致",
    "Flux Kontext Max (higher quality)": "Flux Kontext Max（更高质量）",
    # /imagine
    "imagine": "生成图片",
    "Create an image from a text prompt": "根据文字描述生成图片",
    "What to draw": "要画什么",
    "Output aspect ratio (default 16:9)": "输出宽高比（默认 16:9）",
    # message command
    "Edit image": "编辑图片",
    # /kontext
    "Kontext settings for this server": "本服务器的 Kontext 设置",
    "show": "查看",
    "Show every setting and today's usage": "查看所有设置和今日用量",
    "Safety tolerance in ordinary channels (0 strictest … 6)": "普通频道的安全等级（0 最严格 … 6）",
    "nsfw-safety": "限制级安全等级",
    "Safety tolerance in age-restricted channels only (0 … 6)": "仅用于年龄限制频道的安全等级（0 … 6）",
    "value": "数值",
    "models": "模型设置",
    "Which models may be used, and the default": "允许使用的模型及默认模型",
    "allowed": "允许",
    "default": "默认",
    "both": "全部",
    "channels": "频道",
    "Channels where the bot may be used (empty = everywhere)": ("允许使用机器人的频道（为空表示所有频道）"),
    "roles": "身份组",
    "Roles that may use the bot (empty = everyone)": "允许使用机器人的身份组（为空表示所有人）",
    "action": "操作",
    "add": "添加",
    "remove": "移除",
    "clear": "清空",
    "channel": "频道",
    "role": "身份组",
    "cooldown": "冷却",
    "Seconds a user must wait between requests (0 = off)": "用户两次请求之间的等待秒数（0 表示关闭）",
    "seconds": "秒数",
    "quota": "配额",
    "Jobs per day (UTC) per user and per server (0 = unlimited)": (
        "每天（UTC）每人和全服的任务数（0 表示不限）"
    ),
    "user": "每人",
    "server": "全服",
    "log-channel": "日志频道",
    "Channel for the moderation log (omit to turn it off)": "审核日志频道（留空则关闭）",
    "reset": "重置",
    "Reset every setting of this server to the defaults": "将本服务器的所有设置恢复为默认值",
    "blocklist": "屏蔽词",
    "Words or patterns refused in prompts": "提示词中禁止的词语或模式",
    "Refuse prompts containing this word or pattern (* = anything)": (
        "拒绝包含该词语或模式的提示词（* 表示任意内容）"
    ),
    "entry": "条目",
    "Remove a block-list entry": "移除一条屏蔽词",
    "list": "列表",
    "Show the block-list": "查看屏蔽词列表",
}

CHINESE_LOCALES = (discord.Locale.chinese,)


class KontextTranslator(app_commands.Translator):
    """English strings in the code; Simplified Chinese for zh-CN clients."""

    async def translate(
        self,
        string: app_commands.locale_str,
        locale: discord.Locale,
        context: app_commands.TranslationContextTypes,
    ) -> str | None:
        if locale in CHINESE_LOCALES:
            return ZH_CN.get(string.message)
        return None
