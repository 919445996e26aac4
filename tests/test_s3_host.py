"""IMAGE_HOST=s3 against a real S3 server (SeaweedFS checks signatures and expiry of presigned links)."""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiobotocore.session import get_session

from kontext.adapters.hosting.s3 import S3Host, S3Problem
from kontext.config import Settings, load_settings
from kontext.domain.errors import HostingError
from tests.harness import API_KEY, TOKEN, free_port
from tests.servers import S3Server


async def new_bucket(s3: S3Server) -> str:
    bucket = f"kontext-{secrets.token_hex(4)}"
    async with get_session().create_client(
        "s3",
        endpoint_url=s3.endpoint,
        region_name="us-east-1",
        aws_access_key_id=s3.access_key,
        aws_secret_access_key=s3.secret_key,
    ) as client:
        await client.create_bucket(Bucket=bucket)
    return bucket


def settings_for(s3: S3Server, bucket: str, **env: str) -> Settings:
    return load_settings(
        {"DISCORD_TOKEN": TOKEN, "APIMART_API_KEY": API_KEY, **s3.client_settings(bucket), **env}
    )


@pytest.fixture
async def host(s3: S3Server) -> AsyncIterator[S3Host]:
    opened = S3Host(settings_for(s3, await new_bucket(s3), S3_URL_TTL_SECONDS="60"))
    await opened.open()
    yield opened
    await opened.close()


async def get(url: str) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.read()


async def test_presigned_link_serves_the_input_and_only_that(host: S3Host) -> None:
    await host.check()
    hosted = await host.put("job1", b"\x89PNG input", "image/png", "png", None)
    assert hosted.handle is not None and hosted.handle.startswith("kontext/job1-")
    assert await get(hosted.url) == (200, b"\x89PNG input")
    tampered = hosted.url.replace("X-Amz-Signature=", "X-Amz-Signature=0")
    assert (await get(tampered))[0] == 403, "a forged link is refused by the server"
    unsigned = hosted.url.split("?", 1)[0]
    assert (await get(unsigned))[0] == 403, "the bucket is not public"
    await host.delete(hosted.handle)
    assert (await get(hosted.url))[0] == 404, "deleted after the job"


async def test_presigned_links_expire(s3: S3Server) -> None:
    settings = settings_for(s3, await new_bucket(s3))
    short = S3Host(dataclasses.replace(settings, s3_url_ttl_s=1))
    await short.open()
    hosted = await short.put("job2", b"data", "image/jpeg", "jpg", None)
    await short.close()
    assert (await get(hosted.url))[0] == 200
    await asyncio.sleep(2.2)  # the link's own expiry is what is being tested
    assert (await get(hosted.url))[0] == 403


async def test_a_missing_bucket_names_the_setting(s3: S3Server) -> None:
    host = S3Host(settings_for(s3, "no-such-bucket-here"))
    await host.open()
    with pytest.raises(S3Problem) as problem:
        await host.check()
    await host.close()
    assert problem.value.variable == "S3_BUCKET"


async def test_wrong_credentials_name_the_setting(s3: S3Server) -> None:
    bucket = await new_bucket(s3)
    host = S3Host(settings_for(s3, bucket, S3_SECRET_ACCESS_KEY="wrong-secret-key"))
    await host.open()
    with pytest.raises(S3Problem) as problem:
        await host.check()
    await host.close()
    assert problem.value.variable == "S3_ACCESS_KEY_ID" and "wrong-secret-key" not in str(problem.value)


async def test_an_unreachable_server_fails_fast_with_a_clear_error(s3: S3Server) -> None:
    settings = settings_for(s3, "any", S3_ENDPOINT_URL=f"http://127.0.0.1:{free_port()}")
    host = S3Host(settings)
    await host.open()
    with pytest.raises(S3Problem) as problem:
        await host.check()
    assert problem.value.variable == "S3_ENDPOINT_URL"
    with pytest.raises(HostingError):
        await host.put("job3", b"x", "image/png", "png", None)
    await host.close()


async def test_a_published_bucket_gets_plain_links(s3: S3Server) -> None:
    settings = settings_for(s3, await new_bucket(s3), S3_PUBLIC_BASE_URL="https://inputs.example.org/")
    host = S3Host(settings)
    await host.open()
    hosted = await host.put("job4", b"x", "image/png", "png", None)
    await host.close()
    assert hosted.url == f"https://inputs.example.org/{hosted.handle}"


async def test_kept_inputs_live_in_the_bucket_until_swept(host: S3Host) -> None:
    from kontext.adapters.hosting.s3 import S3Archive

    archive = S3Archive(host)
    ref = await archive.keep("1a2b3c4d5e", b"normalised", "jpg")
    assert ref == "kontext/kept/1a2b3c4d5e.jpg"
    assert await archive.load(ref) == b"normalised"
    assert await archive.load("kontext/elsewhere.jpg") is None, "only its own prefix"
    assert await archive.sweep(before=0) == 0, "nothing older than the epoch"
    assert await archive.sweep(before=4_102_444_800) == 1  # 2100: everything is older
    assert await archive.load(ref) is None
