"""The Discord-free intake: refusals, the place in line and the quota are decided and given back right."""

from __future__ import annotations

from typing import Any

import pytest

from kontext.domain.jobs import JobKind
from kontext.domain.policy import BotDefaults, Denied
from kontext.services.intake import (
    Accepted,
    AttachmentInfo,
    EditOptions,
    EditRequest,
    Intake,
    InteractionHandle,
    Refused,
)
from kontext.services.ledger import MemoryLedger
from kontext.services.moderation import Moderation
from tests.fakes.memory import MemoryStore
from tests.test_runner import Rig

GUILD = 77
HANDLE = InteractionHandle(
    application_id=1,
    interaction_id=2,
    token="tok",
    issued_at=0.0,
    status_message_id=3,
    attachment_size_limit=10 << 20,
)


def request(prompt: str = "make it blue", **changes: Any) -> EditRequest:
    fields: dict[str, Any] = {
        "kind": JobKind.EDIT,
        "options": EditOptions(prompt=prompt),
        "user_id": 5,
        "user_name": "alice",
        "guild_id": GUILD,
        "channel_id": 6,
        "locale": "en-US",
        "attachment": AttachmentInfo("https://cdn.example/a.png", "a.png", "image/png", 1000),
    }
    fields.update(changes)
    return EditRequest(**fields)


class Setup:
    def __init__(self, **env: str) -> None:
        self.rig = Rig()
        self.runner = self.rig.build(**env)
        self.store = MemoryStore()
        self.moderation = Moderation(
            self.store, MemoryLedger(self.store), BotDefaults("flux-kontext-pro", 2, allow_dms=False)
        )
        self.denied: list[Denied] = []
        self.intake = Intake(
            self.runner.settings,
            self.runner,
            self.moderation,
            on_denied=lambda r, p, d: self.denied.append(d),
        )

    async def quota(self, per_user: int) -> None:
        await self.moderation.change(GUILD, user_daily_quota=per_user)


@pytest.mark.parametrize(
    ("req", "code"),
    [
        (request("   "), "prompt_empty"),
        (request("x" * 5000), "prompt_too_long"),
        (request(attachment=AttachmentInfo("u", "a.png", "image/png", 999 << 20)), "image_too_large"),
        (request(attachment=AttachmentInfo("u", "a.pdf", "application/pdf", 10)), "attachment_not_image"),
        (request(attachment=AttachmentInfo("u", "notes.txt", None, 10)), "attachment_not_image"),
        (request(guild_id=None), "policy_dm_disabled"),
    ],
)
async def test_refusals_carry_a_message_key(req: EditRequest, code: str) -> None:
    setup = Setup()
    decision = await setup.intake.accept(req)
    assert isinstance(decision, Refused) and decision.code == code
    setup.runner.reserve()  # nothing was left reserved by the refusal
    assert setup.store.usage == {}, "a refused request is not counted"


async def test_a_full_line_refuses_before_anything_is_counted() -> None:
    setup = Setup(MAX_QUEUED_JOBS="1")
    first = await setup.intake.accept(request())
    assert isinstance(first, Accepted)
    second = await setup.intake.accept(request())
    assert isinstance(second, Refused) and second.code == "busy"
    await setup.moderation.flush()
    assert sum(count for count, _ in setup.store.usage.values()) == 1


async def test_a_denial_reaches_the_moderation_log_hook_and_frees_the_place() -> None:
    setup = Setup(MAX_QUEUED_JOBS="1")
    await setup.quota(1)
    assert isinstance(await setup.intake.accept(request()), Accepted)
    setup.runner.release()
    denied = await setup.intake.accept(request())
    assert isinstance(denied, Refused) and denied.code == "policy_user_quota"
    assert [d.code for d in setup.denied] == ["policy_user_quota"]
    setup.runner.reserve()


async def test_abandoned_requests_give_back_their_quota() -> None:
    """The acknowledgement failed: the user must not lose a daily edit for nothing."""
    setup = Setup()
    await setup.quota(1)
    accepted = await setup.intake.accept(request())
    assert isinstance(accepted, Accepted)
    await setup.intake.abandon(accepted)
    again = await setup.intake.accept(request())
    assert isinstance(again, Accepted), "the refunded quota can be used"
    await setup.moderation.flush()
    counts, _ = await setup.store.usage_snapshot(accepted.admission.charge.day, GUILD)
    assert counts == {5: 1}


async def test_a_job_that_cannot_start_is_refunded() -> None:
    setup = Setup()
    await setup.quota(1)
    accepted = await setup.intake.accept(request())
    assert isinstance(accepted, Accepted)
    await setup.runner.stop()
    with pytest.raises(Exception, match="stopping"):
        await setup.intake.start(accepted, HANDLE)
    total, _ = await setup.moderation.usage_today(GUILD)
    assert total == 0, "the quota taken at admission was given back"


async def test_an_accepted_request_becomes_a_job_with_the_admitted_model_and_safety() -> None:
    setup = Setup()
    await setup.moderation.change(GUILD, safety=1, allowed_models=["flux-kontext-max"])
    accepted = await setup.intake.accept(request(options=EditOptions(prompt="hi", safety=4)))
    assert isinstance(accepted, Accepted)
    job = await setup.intake.start(accepted, HANDLE)
    assert (job.model, job.safety_tolerance, job.size) == ("flux-kontext-max", 1, "match_input_image")
    assert (job.input_url, job.interaction_token, job.status_message_id) == (
        "https://cdn.example/a.png",
        "tok",
        3,
    )
    await setup.runner.wait_idle()
