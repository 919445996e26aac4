"""Image hosts behind the :class:`~kontext.services.ports.ImageHost` port; :func:`build_host` picks one."""

from __future__ import annotations

from kontext.adapters.hosting.apimart import ApimartHost
from kontext.adapters.hosting.discord import DiscordHost
from kontext.adapters.hosting.local import LocalHost, load_secret
from kontext.adapters.hosting.s3 import S3Archive, S3Host, S3Problem
from kontext.config import Settings
from kontext.services.ports import ImageHost, ImageProvider

__all__ = ["ApimartHost", "DiscordHost", "LocalHost", "S3Archive", "S3Host", "S3Problem", "build_host"]


def build_host(settings: Settings, provider: ImageProvider) -> ImageHost:
    """The host named by ``IMAGE_HOST``."""
    if settings.image_host == "local":
        assert settings.public_base_url is not None  # validated in config
        secret = load_secret(settings.data_dir / "web_secret")
        return LocalHost(
            settings.data_dir / "hosted", settings.public_base_url, secret, settings.hosted_file_ttl_s
        )
    if settings.image_host == "discord":
        return DiscordHost()
    if settings.image_host == "s3":
        return S3Host(settings)
    return ApimartHost(provider)
