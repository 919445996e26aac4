"""Image hosts behind one port (:class:`ImageHost`); :func:`build_host` picks one from settings."""

from __future__ import annotations

from kontext.adapters.apimart.client import ApimartClient
from kontext.config import Settings
from kontext.adapters.hosting.apimart import ApimartHost
from kontext.adapters.hosting.base import HostedImage, ImageHost, StatusAttacher
from kontext.adapters.hosting.discord import DiscordHost
from kontext.adapters.hosting.local import LocalHost, load_secret

__all__ = ["HostedImage", "ImageHost", "LocalHost", "StatusAttacher", "build_host"]


def build_host(settings: Settings, client: ApimartClient) -> ImageHost:
    """The host named by ``IMAGE_HOST``."""
    if settings.image_host == "local":
        assert settings.public_base_url is not None  # validated in config
        secret = load_secret(settings.data_dir / "web_secret")
        return LocalHost(
            settings.data_dir / "hosted", settings.public_base_url, secret, settings.hosted_file_ttl_s
        )
    if settings.image_host == "discord":
        return DiscordHost()
    return ApimartHost(client)
