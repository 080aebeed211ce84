"""Stubs of the prototype and revision activities (milestone records, a revision's base, packaging, the sandbox's
verdict), and the prototype and revision workflows' inputs. The AI calls they make are stubbed in stubs/ai.py."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from models.enums import AIProvider
from models.messages.ai import TranscriptionCall
from models.messages.prototypes import (
    PackagedPrototype,
    PrototypeMilestone,
    PrototypeOrder,
    PrototypePackage,
    RevisionBase,
    RevisionMilestone,
    RevisionOrder,
    SandboxCheck,
    VerificationRequest,
    VerificationResult,
)
from stubs.ai import FAST_AI
from stubs.base import Stubs
from stubs.files import DOWNLOAD_TOKEN, PREVIEW_TOKEN

NO_BROWSER = "no headless browser on this worker"
"""Why a passing stubbed verdict has no picture, unless `Outside.preview` gives one."""
STUB_FILES = {"main.py": "print('to-do')\n", "test_main.py": "def test_nothing():\n    pass\n"}
"""The files a stubbed revision builds on."""


class PrototypeStubs(Stubs):
    def all(self) -> list[Callable[..., Any]]:
        return [
            self.record_prototype_milestone,
            self.read_revision_base,
            self.record_revision_milestone,
            self.package_prototype,
            self.verify_code,
        ]

    @activity.defn(name="record_prototype_milestone")
    async def record_prototype_milestone(self, milestone: PrototypeMilestone) -> None:
        await self._note(milestone)

    @activity.defn(name="read_revision_base")
    async def read_revision_base(self, order: RevisionOrder) -> RevisionBase:
        await self._note(order)
        return RevisionBase(idea=order.idea, plan="# Plan", files=STUB_FILES, revision=order.number - 1)

    @activity.defn(name="record_revision_milestone")
    async def record_revision_milestone(self, milestone: RevisionMilestone) -> None:
        await self._note(milestone)

    @activity.defn(name="package_prototype")
    async def package_prototype(self, package: PrototypePackage) -> PackagedPrototype:
        await self._note(package)
        if self.outside.storage_down:
            raise ApplicationError("storage unreachable: connection refused", type="StorageUnreachable")
        return PackagedPrototype(
            file_id=package.file_id,
            size=1,
            sha256="0" * 64,
            download_token=DOWNLOAD_TOKEN,
            names=[answer.document for answer in package.answers],
            preview_token=PREVIEW_TOKEN if package.preview_file_id is not None else None,
        )

    @activity.defn(name="verify_code")
    async def verify_code(self, request: VerificationRequest) -> VerificationResult:
        await self._note(request)
        failing = len(self.outside.called("verify_code")) <= self.outside.verifications_failing
        check = SandboxCheck(
            name="compile main.py", passed=not failing, output="SyntaxError: invalid syntax" if failing else ""
        )
        pictured = not failing and self.outside.preview is not None
        return VerificationResult(
            round=request.round,
            passed=not failing,
            files=["main.py"],
            checks=[check],
            network_isolated=True,
            app_started=None if failing else True,
            preview=self.outside.preview if pictured else None,
            preview_unavailable=None if failing or pictured else NO_BROWSER,
        )


def prototype_order(
    providers: Sequence[AIProvider] = (AIProvider.OPENAI, AIProvider.OFFLINE), *, voice: bool = False
) -> PrototypeOrder:
    prototype_id = uuid.uuid4()
    audio = TranscriptionCall(audio_key=f"audio/{prototype_id}", filename="idea.ogg", content_type="audio/ogg")
    return PrototypeOrder(
        prototype_id=prototype_id,
        user_id=uuid.uuid4(),
        idea="" if voice else "A to-do list app with reminders",
        audio=audio if voice else None,
        providers=list(providers),
        transcribers=[AIProvider.OPENAI] if voice else [],
        policy=FAST_AI,
        file_lifetime=timedelta(hours=24),
        link_base_url="https://api.statex.invalid",
    )


def revision_order(number: int = 1) -> RevisionOrder:
    return RevisionOrder(
        **prototype_order(providers=[AIProvider.OPENAI]).model_dump(),
        revision_id=uuid.uuid4(),
        number=number,
        feedback="Add a due date to every item",
    )
