"""``IMAGE_HOST=s3``: any S3-compatible bucket (AWS S3, Cloudflare R2, MinIO, SeaweedFS).

The normalised input is uploaded under ``S3_PREFIX`` with an unguessable name; APIMart gets a
presigned GET link that expires after ``S3_URL_TTL_SECONDS`` (or a plain link under
``S3_PUBLIC_BASE_URL`` for a published bucket); the object is deleted when the job ends. Every
process of a scaled-out bot can host and delete, so it suits several processes. Requests have short
timeouts: an S3 outage fails the job with a clear message instead of hanging it.
"""

from __future__ import annotations

import logging
import secrets
from contextlib import AsyncExitStack
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError

from kontext.config import Settings
from kontext.domain.errors import HostingError
from kontext.services.ports import HostedImage, StatusAttacher

log = logging.getLogger("kontext.hosting.s3")

#: Seconds to connect and to read one S3 reply; two attempts at most.
TIMEOUT_S = 10


class S3Problem(Exception):
    """The bucket cannot be used; ``variable`` names the setting to fix."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable
        self.problem = problem


def _problem(exc: Exception) -> S3Problem:
    """The setting to blame for an S3 error, in one line without secrets."""
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in ("NoSuchBucket", "404") or status == 404:
            return S3Problem("S3_BUCKET", "the bucket does not exist on this S3 server")
        if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403") or status == 403:
            return S3Problem(
                "S3_ACCESS_KEY_ID",
                f"the S3 server refused these credentials for the bucket ({code or status})",
            )
        return S3Problem("S3_BUCKET", f"the S3 server answered {code or status}")
    return S3Problem("S3_ENDPOINT_URL", f"cannot reach the S3 server ({type(exc).__name__})")


class S3Host:
    """Uploads, presigned links and deletes on one bucket (one client, opened with the bot)."""

    name = "s3"

    def __init__(self, settings: Settings) -> None:
        assert settings.s3_bucket is not None  # validated in config
        self.bucket = settings.s3_bucket
        self.prefix = settings.s3_prefix
        self.ttl_s = settings.s3_url_ttl_s
        self.public_base_url = (settings.s3_public_base_url or "").rstrip("/") or None
        self._options: dict[str, Any] = {
            "region_name": settings.s3_region,
            "endpoint_url": settings.s3_endpoint_url,
            "aws_access_key_id": settings.s3_access_key_id,
            "aws_secret_access_key": settings.s3_secret_access_key,
            "config": AioConfig(
                signature_version="s3v4",
                s3={"addressing_style": "path" if settings.s3_endpoint_url else "auto"},
                connect_timeout=TIMEOUT_S,
                read_timeout=TIMEOUT_S,
                retries={"max_attempts": 2, "mode": "standard"},
            ),
        }
        self._stack = AsyncExitStack()
        self._client: Any = None

    async def open(self) -> None:
        self._client = await self._stack.enter_async_context(
            get_session().create_client("s3", **self._options)
        )

    async def close(self) -> None:
        await self._stack.aclose()
        self._client = None

    @property
    def client(self) -> Any:
        """The open S3 client (aiobotocore's client is untyped)."""
        return self._client

    async def check(self) -> None:
        """Prove the bucket is reachable and writable (a probe object is written and deleted)."""
        key = f"{self.prefix}check-{secrets.token_hex(8)}"
        try:
            await self._client.head_bucket(Bucket=self.bucket)
            await self._client.put_object(
                Bucket=self.bucket, Key=key, Body=b"kontext", ContentType="text/plain"
            )
            await self._client.delete_object(Bucket=self.bucket, Key=key)
        except (ClientError, BotoCoreError, OSError) as exc:
            raise _problem(exc) from None

    async def put(
        self, job_id: str, data: bytes, content_type: str, extension: str, attach: StatusAttacher | None
    ) -> HostedImage:
        key = f"{self.prefix}{job_id}-{secrets.token_hex(16)}.{extension}"
        try:
            await self._client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type)
            if self.public_base_url is not None:
                url = f"{self.public_base_url}/{key}"
            else:
                url = await self._client.generate_presigned_url(
                    "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=self.ttl_s
                )
        except (ClientError, BotoCoreError, OSError) as exc:
            raise HostingError(f"S3 upload failed: {_problem(exc)}") from None
        log.debug("hosted %s (%d bytes) for %d s", key, len(data), self.ttl_s)
        return HostedImage(url=str(url), handle=key)

    async def delete(self, handle: str | None) -> None:
        if not handle or not handle.startswith(self.prefix):
            return
        try:
            await self._client.delete_object(Bucket=self.bucket, Key=handle)
        except (ClientError, BotoCoreError, OSError) as exc:
            log.warning("could not delete hosted input %s: %s", handle, _problem(exc))


class S3Archive:
    """Kept inputs in the bucket (``<S3_PREFIX>kept/``), shared by every process of the bot."""

    def __init__(self, host: S3Host) -> None:
        self.host = host
        self.prefix = f"{host.prefix}kept/"

    async def keep(self, job_id: str, data: bytes, extension: str) -> str | None:
        key = f"{self.prefix}{job_id}.{extension}"
        try:
            await self.host.client.put_object(Bucket=self.host.bucket, Key=key, Body=data)
        except (ClientError, BotoCoreError, OSError) as exc:
            log.warning("could not keep the input of job %s: %s", job_id, _problem(exc))
            return None
        return key

    async def load(self, ref: str) -> bytes | None:
        if not ref.startswith(self.prefix):
            return None
        try:
            reply = await self.host.client.get_object(Bucket=self.host.bucket, Key=ref)
            async with reply["Body"] as body:
                data: bytes = await body.read()
        except (ClientError, BotoCoreError, OSError) as exc:
            log.info("kept input %s is not available: %s", ref, _problem(exc))
            return None
        return data

    async def sweep(self, before: float) -> int:
        """Delete kept inputs older than ``before`` (a bucket lifecycle rule can do it too)."""
        removed = 0
        try:
            paginator = self.host.client.get_paginator("list_objects_v2")
            async for page in paginator.paginate(Bucket=self.host.bucket, Prefix=self.prefix):
                old = [
                    {"Key": o["Key"]}
                    for o in page.get("Contents", [])
                    if o["LastModified"].timestamp() < before
                ]
                if old:
                    await self.host.client.delete_objects(Bucket=self.host.bucket, Delete={"Objects": old})
                    removed += len(old)
        except (ClientError, BotoCoreError, OSError) as exc:
            log.warning("could not sweep kept inputs: %s", _problem(exc))
        return removed
