"""PrototypeWorkflow's and PrototypeRevisionWorkflow's inputs, queries, milestones and package."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from models.enums import AIProvider, PrototypeStatus
from models.messages.ai import AICallPolicy, TranscriptionCall
from models.untrusted import cleaned


def shared_fields(target: type[BaseModel], source: type[BaseModel]) -> set[str]:
    """The fields two shapes both declare: what a mapper from one to the other copies by name, so that a field
    added to both is carried with no change to the mapper."""
    return set(target.model_fields) & set(source.model_fields)


class VerificationRequest(BaseModel):
    """The code answers to check, in order: a later answer's file replaces an earlier one of the same path."""

    prototype_id: uuid.UUID
    round: int = Field(ge=0, description="0: the code step's answer; n: after the n-th fix round")
    code_answers: list[str]


class SandboxCheck(BaseModel):
    name: str = Field(description="What was checked: 'compile app/main.py', 'parse config.toml', 'pytest ...'")
    passed: bool
    output: str = Field(
        default="", description="What the check said (the code's output: data), trimmed to a few KB, controls stripped"
    )


PREVIEW_MAX_BYTES = 512 * 1024
"""The largest screenshot a verification result carries: it crosses Temporal inside the result."""


class PreviewImage(BaseModel):
    """A screenshot of the generated app's main page, taken in the sandbox."""

    model_config = ConfigDict(ser_json_bytes="base64", val_json_bytes="base64")  # crosses Temporal as JSON

    png: bytes = Field(description="The PNG, at most PREVIEW_MAX_BYTES (512 KiB)")
    width: int
    height: int
    page_url_path: str = Field(default="/", description="The page that was shot, relative to the app")


class VerificationResult(BaseModel):
    """The sandbox's verdict on one version of the code."""

    round: int
    passed: bool = Field(description="Files were found and every check passed")
    files: list[str]
    checks: list[SandboxCheck]
    network_isolated: bool = Field(description="The checks ran in a network namespace of their own")
    sandbox_error: str | None = Field(default=None, description="The sandbox itself could not run: nothing checked")
    sandbox_available: bool = Field(
        default=True, description="False: this server cannot isolate code (sandbox_error says why), so none was run"
    )
    app_started: bool | None = Field(default=None, description="None: not tried (checks failed or no sandbox)")
    preview: PreviewImage | None = None
    preview_unavailable: str | None = Field(default=None, description="Why there is no preview, for people")

    def failures(self) -> str:
        """What failed, as the fix prompt quotes it (`models.untrusted.quoted`: the output is the code's, hostile
        data) and VERIFICATION.md shows it; control characters and escape sequences stripped (`cleaned`), also
        from results recorded before the sandbox stripped them itself."""
        if not self.sandbox_available:
            return cleaned(f"Nothing was run: the sandbox is unavailable on this server ({self.sandbox_error}).")
        if self.sandbox_error is not None:
            return cleaned(f"The sandbox could not run: {self.sandbox_error}")
        if not self.files:
            return "No files could be read from the answer: give every file as a fenced block naming its path."
        failed = (f"{check.name}:\n{check.output}".rstrip() for check in self.checks if not check.passed)
        return cleaned("\n\n".join(failed))


class StoredPreview(BaseModel):
    """The picture of the app as it is kept: a PNG file of its own beside the zip (same storage, same lifetime,
    its own retention timer), its bytes never in a row, a query or an event."""

    file_id: uuid.UUID
    width: int
    height: int
    page_url_path: str = "/"


def preview_column(preview: StoredPreview | None) -> dict[str, Any] | None:
    """A StoredPreview as a row's JSON column holds it."""
    return preview.model_dump(mode="json") if preview is not None else None


class PrototypeOrder(BaseModel):
    """PrototypeWorkflow's input: everything the API decided (providers, limits) before the workflow starts."""

    prototype_id: uuid.UUID
    user_id: uuid.UUID
    email: str | None = None
    """Only in runs begun before the emails went to the account's address read by the activity
    (`email-by-user-id`); new runs carry the user's id alone."""
    idea: str = Field(default="", description="Empty for a voice message: the transcript becomes the idea")
    audio: TranscriptionCall | None = None
    providers: list[AIProvider] = Field(min_length=1, description="Tried in order; chosen by workflows.ai")
    provider_named: bool = Field(default=False, description="The request named a provider: steps keep its order")
    transcribers: list[AIProvider] = Field(default_factory=list)
    policy: AICallPolicy
    transcription_timeout_seconds: float = Field(default=300.0, gt=0)
    file_lifetime: timedelta
    link_base_url: str = Field(description="The API's public address, for the download link in the email")
    fix_rounds: int = Field(default=2, ge=0, description="Fix rounds at most when the code fails its checks")
    review_requirements: bool = Field(default=False, description="Pause after the requirements for approval")
    approval_window: timedelta = Field(default=timedelta(days=7), description="No answer by then: cancelled")
    eu_resident: bool = Field(default=False, description="An EU_COMPLIANCE user's: the zip is kept in the EU")


class PrototypeApproval(BaseModel):
    """The customer's answer to the requirements (PrototypeWorkflow's `approve` update)."""

    approve: bool
    edited_requirements: str | None = Field(default=None, description="Replaces the requirements step's answer")


REQUIREMENTS_SHOWN_MAX_CHARS = 20_000
"""The most of a step's answer that a pending approval carries (the status, the event, the email): model output,
so bounded. The same as the most an edit may send back (models.api.prototypes.ApprovalRequest)."""

ON_APPROVE = "The pipeline continues: the plan, the code and its tests are made from these requirements."
ON_EDIT = "Your text replaces these requirements for every later step and in the zip; then the pipeline continues."
ON_DECLINE = "The prototype is cancelled: nothing more is made or spent."


class PendingApproval(BaseModel):
    """What a prototype AWAITING_APPROVAL asks its customer to approve or edit: a step's answer, as generated
    (model output: data to show, never instructions), cut to REQUIREMENTS_SHOWN_MAX_CHARS."""

    step: str = Field(description="The step whose answer awaits approval")
    requirements: str = Field(max_length=REQUIREMENTS_SHOWN_MAX_CHARS, description="The step's answer, as generated")
    truncated: bool = Field(description="The answer was longer: `requirements` is its beginning")
    answer_by: datetime | None = Field(description="Unanswered by then, the prototype is cancelled")

    @classmethod
    def of(cls, step: str, answer: str, answer_by: datetime | None) -> PendingApproval:
        shown = answer[:REQUIREMENTS_SHOWN_MAX_CHARS]
        return cls(step=step, requirements=shown, truncated=len(shown) < len(answer), answer_by=answer_by)


class PrototypeProgress(BaseModel):
    """PrototypeWorkflow's query: where the pipeline stands, and what it has cost so far."""

    prototype_id: uuid.UUID | None
    status: PrototypeStatus
    idea: str
    steps: list[str]
    steps_done: list[str]
    current_step: str | None
    trying: AIProvider | None
    progress_percent: int
    cost_usd_micros: int
    file_id: uuid.UUID | None
    error: str | None
    verified: bool | None = Field(
        default=None, description="The code passed its sandbox checks (None: not verified yet, or an older run)"
    )
    fix_rounds: int = Field(default=0, description="How often failing code went back to the code agent")
    approval: PendingApproval | None = Field(default=None, description="AWAITING_APPROVAL: what awaits the answer")
    preview: StoredPreview | None = Field(default=None, description="COMPLETED: the picture of the running app")
    preview_unavailable: str | None = Field(default=None, description="Checked but no picture: why")


PrototypeEventKind = Literal[
    "step_started", "step_finished", "verification", "fix_round", "approval_needed", "completed", "failed", "cancelled"
]
ENDING_EVENTS: tuple[PrototypeEventKind, ...] = ("completed", "failed", "cancelled")


class PrototypeEvent(BaseModel):
    """One entry of PrototypeWorkflow's event log (the `events` query), kept in the workflow's memory: the live
    progress stream (GET /api/prototypes/{id}/events) sends each once, in order, `id` its SSE id."""

    id: int = Field(ge=1, description="Its place in the log, from 1: a client resumes after the last id it saw")
    kind: PrototypeEventKind
    at: datetime = Field(description="The workflow's clock")
    step: str | None = None
    provider: AIProvider | None = Field(default=None, description="Who answered the step's call")
    model_used: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost_usd_micros: int | None = Field(default=None, description="Of this call; the total on completed/failed")
    round: int | None = Field(default=None, description="verification: 0 the code step's, n after fix round n")
    verified: bool | None = None
    failed_checks: list[str] | None = Field(default=None, description="verification: the checks that failed")
    file_id: uuid.UUID | None = Field(default=None, description="completed: the zip")
    error: str | None = Field(default=None, description="failed: why")
    approval: PendingApproval | None = Field(default=None, description="approval_needed: what awaits the answer")
    preview_file_id: uuid.UUID | None = Field(default=None, description="completed: the picture of the app")
    preview_unavailable: str | None = Field(default=None, description="completed without a picture: why")


class PrototypeMilestone(BaseModel):
    """What the Prototype row says at a milestone; writing the same milestone twice changes nothing."""

    prototype_id: uuid.UUID
    status: PrototypeStatus
    idea: str | None = Field(default=None, description="Set once a voice message is transcribed")
    current_step: str | None
    steps_done: list[str] | None = Field(default=None, description="None in milestones of older workflow runs")
    progress_percent: int = Field(ge=0, le=100)
    cost_usd_micros: int = Field(ge=0)
    file_id: uuid.UUID | None = None
    error: str | None = None
    verified: bool | None = None
    fix_rounds: int = 0
    verification: VerificationResult | None = Field(default=None, description="The latest sandbox verdict")
    preview: StoredPreview | None = None
    preview_unavailable: str | None = None

    @classmethod
    def of(
        cls, progress: PrototypeProgress, *, idea: str | None, verification: VerificationResult | None
    ) -> PrototypeMilestone:
        """The milestone the workflow's progress has reached: every field the row shares with the query, by name
        (a field added to both is recorded with no change here); the idea only once transcribed, and the verdict
        without the picture's bytes (kept as a file of its own: `preview`)."""
        shared = progress.model_dump(include=shared_fields(cls, PrototypeProgress) - {"idea"})
        return cls(**shared, idea=idea, verification=without_picture(verification))


def without_picture(verification: VerificationResult | None) -> VerificationResult | None:
    """The verdict as rows and milestones keep it: the screenshot's bytes are stored as a file, not copied."""
    if verification is None or verification.preview is None:
        return verification
    return verification.model_copy(update={"preview": None})


class StepAnswer(BaseModel):
    """One agent step's answer, and where the package puts it."""

    step: str
    document: str = Field(description="Its file in the zip, e.g. PLAN.md")
    text: str
    model_used: str
    cost_usd_micros: int
    holds_files: bool = Field(default=False, description="Fenced blocks naming a path become files of their own")


class PrototypePackage(BaseModel):
    """What the packaging activity zips and stores as the file `file_id`."""

    prototype_id: uuid.UUID
    user_id: uuid.UUID
    file_id: uuid.UUID
    idea: str
    source: Literal["text", "voice"]
    transcribed_by: str | None = None
    answers: list[StepAnswer]
    made_at: datetime = Field(description="The zip entries' date: the same bytes on every retry")
    expires_at: datetime
    verification: VerificationResult | None = Field(default=None, description="Shipped as VERIFICATION.md")
    fix_rounds: int = 0
    storage_key: str | None = Field(default=None, description="Where the zip goes; None: storage_key(file_id)")
    base_files: dict[str, str] = Field(
        default_factory=dict, description="A revision's files from before: the answers' files go over them"
    )
    revision: int | None = Field(default=None, description="A revision's number; None: the prototype itself")
    feedback: str | None = Field(default=None, description="What the revision was asked to change")
    preview_file_id: uuid.UUID | None = Field(
        default=None, description="Where the screenshot (verification.preview) is kept as a PNG file of its own"
    )
    preview_storage_key: str | None = None


class PackagedPrototype(BaseModel):
    file_id: uuid.UUID
    size: int
    sha256: str
    download_token: str = Field(description="Lets the email's link fetch the zip without signing in")
    names: list[str] = Field(description="The zip's entries")
    preview_token: str | None = Field(default=None, description="Lets the email's picture link fetch the PNG")


# --- revisions: PrototypeRevisionWorkflow's input, base, milestones and query --------------------------------


class RevisionOrder(PrototypeOrder):
    """PrototypeRevisionWorkflow's input: the prototype's order as the API would build it now (`idea` the
    prototype's, a voice message's transcript), and the revision's own row, number and feedback."""

    revision_id: uuid.UUID
    number: int = Field(ge=1, description="1 for the first revision of a prototype, then 2, 3 ...")
    feedback: str


class RevisionBase(BaseModel):
    """What a revision builds on, read from the database (the zip expires; the rows do not)."""

    idea: str
    plan: str = Field(default="", description="The plan step's answer, for the fix agent")
    files: dict[str, str] = Field(description="Path -> text: the previous revision's files, or the prototype's")
    revision: int = Field(ge=0, description="Whose files these are: 0 the prototype's own, n revision n's")


class RevisionMilestone(BaseModel):
    """What the PrototypeRevision row says at a milestone; writing the same milestone twice changes nothing."""

    revision_id: uuid.UUID
    status: PrototypeStatus
    current_step: str | None
    cost_usd_micros: int = Field(ge=0)
    file_id: uuid.UUID | None = None
    error: str | None = None
    verified: bool | None = None
    fix_rounds: int = 0
    files: dict[str, str] | None = Field(default=None, description="On completion: the files the next builds on")
    preview: StoredPreview | None = None
    preview_unavailable: str | None = None

    @classmethod
    def of(
        cls, progress: RevisionProgress, *, revision_id: uuid.UUID, files: dict[str, str] | None
    ) -> RevisionMilestone:
        """The milestone the revision's progress has reached: every field the row shares with the query, by name."""
        return cls(
            **progress.model_dump(include=shared_fields(cls, RevisionProgress)), revision_id=revision_id, files=files
        )


class RevisionProgress(BaseModel):
    """PrototypeRevisionWorkflow's query: where the revision stands, and what it has cost so far."""

    prototype_id: uuid.UUID | None
    number: int
    status: PrototypeStatus
    feedback: str
    steps: list[str]
    steps_done: list[str]
    current_step: str | None
    trying: AIProvider | None
    cost_usd_micros: int
    file_id: uuid.UUID | None
    error: str | None
    verified: bool | None
    fix_rounds: int
    based_on: int | None = Field(default=None, description="0: built on the prototype; n: on revision n")
    preview: StoredPreview | None = Field(default=None, description="COMPLETED: the picture of the running app")
    preview_unavailable: str | None = Field(default=None, description="Checked but no picture: why")
