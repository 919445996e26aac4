"""User-facing sentences in English and Simplified Chinese, chosen by the interaction's locale."""

from __future__ import annotations

from typing import Any

from kontext.domain.errors import KontextError

EN = "en"
ZH = "zh"

MESSAGES: dict[str, dict[str, str]] = {
    # --- status line ---
    "status_uploading": {EN: "⬆️ Uploading your image…", ZH: "⬆️ 正在上传图片…"},
    "status_waiting": {
        EN: "🕒 Waiting in line — position {position}…",
        ZH: "🕒 排队中，第 {position} 位…",
    },
    "status_queued": {
        EN: "🕒 Queued at the image service… ({elapsed} s)",
        ZH: "🕒 已提交，等待处理…（{elapsed} 秒）",
    },
    "status_editing": {
        EN: "🎨 Editing {progress} % ({elapsed} s)",
        ZH: "🎨 正在编辑 {progress}%（{elapsed} 秒）",
    },
    "status_editing_noprogress": {EN: "🎨 Editing… ({elapsed} s)", ZH: "🎨 正在编辑…（{elapsed} 秒）"},
    "status_downloading": {EN: "⬇️ Fetching the result… ({elapsed} s)", ZH: "⬇️ 正在获取结果…（{elapsed} 秒）"},
    "status_done": {EN: "✅ Done ({elapsed} s)", ZH: "✅ 完成（{elapsed} 秒）"},
    "status_failed": {EN: "❌ {reason}", ZH: "❌ {reason}"},
    # --- result embed ---
    "result_title": {EN: "Edited image", ZH: "编辑结果"},
    "result_title_imagine": {EN: "Generated image", ZH: "生成结果"},
    "field_prompt": {EN: "Prompt", ZH: "提示词"},
    "field_model": {EN: "Model", ZH: "模型"},
    "field_requester": {EN: "Requested by", ZH: "请求者"},
    "field_time": {EN: "Time", ZH: "耗时"},
    "seconds": {EN: "{elapsed} s", ZH: "{elapsed} 秒"},
    "late_delivery": {
        EN: "{mention}, your edit is ready (it took longer than Discord lets us update the original reply).",
        ZH: "{mention}，你的图片已完成（耗时超过了 Discord 允许更新原回复的时间）。",
    },
    "fallback_delivery": {
        EN: "{mention}, your edit is ready (Discord would not let me update my first reply).",
        ZH: "{mention}，你的图片已完成（Discord 未能更新我的第一条回复）。",
    },
    "late_failure": {
        EN: "{mention}, your edit could not be finished: {reason}",
        ZH: "{mention}，你的编辑未能完成：{reason}",
    },
    "reencoded_note": {
        EN: "The result was re-encoded to fit this channel's upload limit.",
        ZH: "结果已重新压缩以符合本频道的上传大小限制。",
    },
    "letterboxed_note": {
        EN: "Your image was padded to an aspect ratio the model supports.",
        ZH: "你的图片已补边至模型支持的宽高比。",
    },
    # --- input validation ---
    "prompt_empty": {
        EN: "Please describe what to change in the prompt.",
        ZH: "请在提示词中描述要修改的内容。",
    },
    "prompt_too_long": {
        EN: "The prompt is too long ({length} characters; the limit is {limit}).",
        ZH: "提示词过长（{length} 个字符，上限 {limit}）。",
    },
    "attachment_not_image": {
        EN: "That attachment doesn't look like an image. Please attach a PNG, JPEG, WebP, GIF or BMP.",
        ZH: "该附件似乎不是图片。请上传 PNG、JPEG、WebP、GIF 或 BMP 图片。",
    },
    "no_image_in_message": {
        EN: "That message has no image I can edit.",
        ZH: "该消息中没有可编辑的图片。",
    },
    "not_yours": {EN: "Only the requester or a moderator can do that.", ZH: "只有请求者或管理员可以这样做。"},
    "job_gone": {EN: "I no longer have that image.", ZH: "该图片已不可用。"},
    "edit_again_title": {EN: "Edit again", ZH: "继续编辑"},
    "edit_prompt_label": {EN: "What should change?", ZH: "要修改什么？"},
    "button_reroll": {EN: "Re-roll", ZH: "重新生成"},
    "button_edit_again": {EN: "Edit again", ZH: "继续编辑"},
    "button_delete": {EN: "Delete", ZH: "删除"},
    # --- errors (codes from kontext.domain.errors) ---
    "internal": {
        EN: "Something went wrong on my side. The operator has been told.",
        ZH: "我这边出了点问题，已通知管理员。",
    },
    "image_error": {EN: "I couldn't use that image.", ZH: "无法使用该图片。"},
    "image_too_large": {
        EN: "That file is too large ({size_mb} MB). Please attach an image under {limit_mb} MB.",
        ZH: "文件过大（{size_mb} MB）。请上传小于 {limit_mb} MB 的图片。",
    },
    "image_not_image": {
        EN: "That file isn't an image I can read. Please attach a PNG, JPEG, WebP, GIF or BMP.",
        ZH: "无法识别该文件为图片。请上传 PNG、JPEG、WebP、GIF 或 BMP 图片。",
    },
    "image_broken": {
        EN: "That image seems damaged or incomplete. Please try another file.",
        ZH: "该图片似乎已损坏或不完整，请换一个文件。",
    },
    "image_bomb": {
        EN: "That image is far too large in pixels ({megapixels} MP; the limit is {limit_mp} MP).",
        ZH: "该图片像素过多（{megapixels} MP，上限 {limit_mp} MP）。",
    },
    "image_bad_shape": {
        EN: "That image's shape ({width}×{height}) can't be edited. Use an aspect ratio between 1:8 and 8:1 "
        "and at least 8 pixels per side.",
        ZH: "该图片尺寸（{width}×{height}）无法编辑。请使用 1:8 到 8:1 之间的宽高比，且每边至少 8 像素。",
    },
    "image_download_failed": {
        EN: "I couldn't download your attachment from Discord. Please try again.",
        ZH: "无法从 Discord 下载你的附件，请重试。",
    },
    "api_error": {
        EN: "The image service returned an error. Please try again later.",
        ZH: "图像服务返回错误，请稍后重试。",
    },
    "api_auth": {
        EN: "The image service rejected this bot's API key. The bot operator needs to fix it.",
        ZH: "图像服务拒绝了本机器人的 API 密钥，需要机器人管理员处理。",
    },
    "api_balance": {
        EN: "The image service refused the job: the bot's account is out of credit "
        "or lacks access to this model.",
        ZH: "图像服务拒绝了任务：机器人账户余额不足或无权使用该模型。",
    },
    "api_rate_limited": {
        EN: "The image service is busy right now (rate limit). Please try again in a minute.",
        ZH: "图像服务繁忙（触发限流），请稍后再试。",
    },
    "api_bad_request": {
        EN: "The image service rejected the request: {message}",
        ZH: "图像服务拒绝了请求：{message}",
    },
    "api_server": {
        EN: "The image service is having problems. Please try again later.",
        ZH: "图像服务出现故障，请稍后重试。",
    },
    "api_unavailable": {
        EN: "I can't reach the image service right now. Please try again later.",
        ZH: "暂时无法连接图像服务，请稍后重试。",
    },
    "api_malformed": {
        EN: "The image service sent an answer I couldn't understand. Please try again later.",
        ZH: "图像服务返回了无法解析的结果，请稍后重试。",
    },
    "api_submit_uncertain": {
        EN: "I lost the connection while sending your job and can't tell whether it started, "
        "so I won't send it again (that could charge twice). Please try again.",
        ZH: "提交任务时连接中断，无法确认是否已开始，为避免重复扣费不会自动重试。请重新提交。",
    },
    "task_failed": {
        EN: "The image service could not make this edit: {reason}",
        ZH: "图像服务无法完成此编辑：{reason}",
    },
    "task_unknown_status": {
        EN: "The image service reported a state I don't know ({status}).",
        ZH: "图像服务返回了未知状态（{status}）。",
    },
    "task_timeout": {
        EN: "The edit took too long (over {seconds} s) and was abandoned.",
        ZH: "编辑耗时过长（超过 {seconds} 秒），已放弃。",
    },
    "host_failed": {
        EN: "I couldn't upload your image for the editor. Please try again later.",
        ZH: "无法上传你的图片以供编辑，请稍后重试。",
    },
    "result_failed": {
        EN: "The edited image could not be downloaded ({reason}).",
        ZH: "无法下载编辑后的图片（{reason}）。",
    },
    "result_too_large": {
        EN: "The edited image is too large to post in this channel.",
        ZH: "编辑后的图片过大，无法在本频道发送。",
    },
    "delivery_failed": {EN: "I couldn't post the result here.", ZH: "无法在此发送结果。"},
    "job_interrupted": {
        EN: "The bot restarted while sending your job. It was not sent twice; please try again.",
        ZH: "提交任务时机器人重启了。任务不会被重复提交，请重试。",
    },
    "shutting_down": {
        EN: "The bot is restarting. Please try again in a moment.",
        ZH: "机器人正在重启，请稍后再试。",
    },
    "busy": {
        EN: "Too many edits are waiting right now. Please try again later.",
        ZH: "当前排队任务过多，请稍后再试。",
    },
    # --- moderation policy (codes from kontext.domain.policy.Denied) ---
    "policy_dm_disabled": {EN: "I only work in servers.", ZH: "我只能在服务器中使用。"},
    "policy_channel": {
        EN: "I can't be used in this channel on this server. Try {channels}.",
        ZH: "本服务器不允许在此频道使用我。请前往 {channels}。",
    },
    "policy_role": {
        EN: "You need one of these roles to use me on this server: {roles}.",
        ZH: "在本服务器使用我需要以下身份组之一：{roles}。",
    },
    "policy_blocked": {
        EN: "Your prompt contains a word or phrase that this server does not allow.",
        ZH: "你的提示词包含本服务器不允许的词语。",
    },
    "policy_model": {
        EN: "The model {model} is not allowed on this server. Allowed: {models}.",
        ZH: "本服务器不允许使用模型 {model}。可用模型：{models}。",
    },
    "policy_cooldown": {
        EN: "Please wait {seconds} s before your next edit.",
        ZH: "请等待 {seconds} 秒后再进行下一次编辑。",
    },
    "policy_user_quota": {
        EN: "You have used your {limit} edits for today on this server. It resets <t:{reset_at}:R>.",
        ZH: "你今天在本服务器的 {limit} 次编辑额度已用完，将于 <t:{reset_at}:R> 重置。",
    },
    "policy_guild_quota": {
        EN: "This server has used all {limit} edits for today. It resets <t:{reset_at}:R>.",
        ZH: "本服务器今天的 {limit} 次编辑额度已用完，将于 <t:{reset_at}:R> 重置。",
    },
    # --- /kontext settings validation (codes from kontext.domain.guild_settings.SettingsError) ---
    "settings_safety_range": {
        EN: "The safety tolerance must be a whole number from {min} (strictest) to {max} (most permissive).",
        ZH: "安全容忍度必须是 {min}（最严格）到 {max}（最宽松）之间的整数。",
    },
    "settings_model_unknown": {
        EN: "I don't know the model {model}. Choose from: {models}.",
        ZH: "未知模型 {model}。可选：{models}。",
    },
    "settings_models_empty": {EN: "At least one model must stay allowed.", ZH: "至少需要允许一个模型。"},
    "settings_default_model_not_allowed": {
        EN: "The default model {model} must be one of the allowed models ({models}).",
        ZH: "默认模型 {model} 必须是允许的模型之一（{models}）。",
    },
    "settings_cooldown_range": {
        EN: "The cooldown must be between 0 and {max} seconds (0 turns it off).",
        ZH: "冷却时间必须在 0 到 {max} 秒之间（0 表示关闭）。",
    },
    "settings_quota_range": {
        EN: "A daily quota must be between 0 and {max} (0 means unlimited).",
        ZH: "每日额度必须在 0 到 {max} 之间（0 表示不限）。",
    },
    "settings_blocklist_entry_empty": {
        EN: "That block-list entry is empty or has nothing to match besides wildcards and punctuation.",
        ZH: "该屏蔽词为空，或除通配符和标点外没有可匹配的内容。",
    },
    "settings_blocklist_entry_too_long": {
        EN: "That block-list entry is too long ({length} characters; the limit is {limit}).",
        ZH: "该屏蔽词过长（{length} 个字符，上限 {limit}）。",
    },
    "settings_blocklist_full": {
        EN: "The block-list is full ({limit} entries). Please remove some entries first.",
        ZH: "屏蔽词列表已满（{limit} 条），请先删除一些。",
    },
    "settings_id_invalid": {EN: "That is not a valid channel or role.", ZH: "这不是有效的频道或身份组。"},
    "settings_list_too_long": {
        EN: "That list is too long (the limit is {limit} entries).",
        ZH: "列表过长（上限 {limit} 项）。",
    },
    # --- /kontext settings ---
    "settings_need_manage_server": {
        EN: "You need the Manage Server permission to change Kontext's settings.",
        ZH: "你需要“管理服务器”权限才能修改 Kontext 的设置。",
    },
    "settings_need_item": {
        EN: "Please pick the channel or role to add or remove.",
        ZH: "请选择要添加或移除的频道或身份组。",
    },
    "settings_saved": {EN: "✅ Saved", ZH: "✅ 已保存"},
    "settings_reset": {EN: "✅ All settings are back to their defaults", ZH: "✅ 所有设置已恢复默认"},
    "show_title": {EN: "Kontext settings", ZH: "Kontext 设置"},
    "show_safety": {EN: "Safety (ordinary channels)", ZH: "安全等级（普通频道）"},
    "show_nsfw_safety": {EN: "Safety (age-restricted channels)", ZH: "安全等级（年龄限制频道）"},
    "show_models": {EN: "Models", ZH: "模型"},
    "show_default": {EN: "default", ZH: "默认"},
    "show_channels": {EN: "Channels", ZH: "频道"},
    "show_everywhere": {EN: "everywhere", ZH: "所有频道"},
    "show_roles": {EN: "Roles", ZH: "身份组"},
    "show_everyone": {EN: "everyone", ZH: "所有人"},
    "show_cooldown": {EN: "Cooldown per user", ZH: "用户冷却时间"},
    "show_quota": {EN: "Daily quota", ZH: "每日配额"},
    "show_quota_value": {EN: "{user} per user, {server} per server", ZH: "每人 {user}，全服 {server}"},
    "show_log_channel": {EN: "Moderation log", ZH: "审核日志"},
    "show_log_problem": {
        EN: "I can't post there ({problem}); give me View, Send, Embed Links and Attach Files.",
        ZH: "我无法在该频道发言（{problem}），请授予查看、发送、嵌入链接和上传文件权限。",
    },
    "show_blocklist": {EN: "Block-list", ZH: "屏蔽词"},
    "show_blocklist_count": {
        EN: "{count} entries (/kontext blocklist list)",
        ZH: "{count} 条（/kontext blocklist list）",
    },
    "show_blocklist_empty": {EN: "The block-list is empty.", ZH: "屏蔽词列表为空。"},
    "show_usage": {EN: "Usage today (UTC)", ZH: "今日用量（UTC）"},
    "show_usage_value": {EN: "{total} jobs; resets <t:{reset}:R>", ZH: "{total} 个任务；<t:{reset}:R> 重置"},
    "show_footer": {
        EN: "Users may ask for a stricter safety value, never a looser one. With an input image the API "
        "may cap safety lower than for text-to-image.",
        ZH: "用户只能要求更严格的安全等级。对带输入图片的编辑，API 可能将安全等级限制得比文生图更低。",
    },
}


def lang_of(locale: str | None) -> str:
    """Map a Discord locale (``zh-CN``, ``en-US`` …) to a message language."""
    if locale and locale.lower().startswith("zh"):
        return ZH
    return EN


def t(key: str, locale: str | None = None, **params: Any) -> str:
    """The sentence for ``key`` in the locale's language, with ``params`` filled in."""
    entry = MESSAGES.get(key) or MESSAGES["internal"]
    text = entry.get(lang_of(locale)) or entry[EN]
    try:
        return text.format(**params)
    except (KeyError, IndexError, ValueError):
        return text


def error_text(error: KontextError, locale: str | None = None) -> str:
    """The user-facing sentence for an error (never its operator detail)."""
    params = {k: ("?" if v is None else v) for k, v in error.params.items()}
    return t(error.code, locale, **params)
