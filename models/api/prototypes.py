"""Requests and responses of /api/ai/prototype, /api/ai/voice and /api/prototypes (revisions included)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field, StrictBool

from models.api.common import AIProviderName, Strict, examples, plain_text
from models.enums import AIProvider, PrototypeStatus
from models.messages.prototypes import ON_APPROVE, ON_DECLINE, ON_EDIT, PrototypeEventKind

EVENTS_URL = (
    "The progress stream (Server-Sent Events) for `new EventSource(new URL(events_url, apiBase))`: relative to the "
    "API, signed for this prototype's stream only (EventSource sends no Authorization header), and opens it for "
    "PROTOTYPE_EVENTS_TOKEN_SECONDS; EventSource's own reconnects resume with Last-Event-ID. Poll again for a "
    "fresh one."
)


class PrototypeRequest(Strict):
    """An app idea in words; POST /api/ai/voice takes it as a voice message instead."""

    model_config = examples(
        {
            "idea": "An app that books climbing gyms: members see free slots and reserve one.",
            "model": "openai",
            "review_requirements": False,
        }
    )

    idea: Annotated[str, Field(min_length=1, max_length=10_000), AfterValidator(plain_text)]
    model: AIProviderName | None = Field(
        default=None, description="Preferred provider for every step; otherwise your service tier decides"
    )
    review_requirements: StrictBool = Field(
        default=False,
        description="Pause after the requirements (AWAITING_APPROVAL) until POST /api/prototypes/{id}/approval: "
        "nothing after them is spent before that",
    )


class ApprovalRequest(Strict):
    """The answer to requirements awaiting approval: go on (with your own text, if you edited them), or cancel."""

    model_config = examples(
        {"approve": True},
        {"approve": True, "edited_requirements": "# Requirements\n\n- Members see free slots.\n- No waiting list."},
        {"approve": False},
    )

    approve: StrictBool
    edited_requirements: Annotated[str, Field(min_length=1, max_length=20_000), AfterValidator(plain_text)] | None = (
        Field(default=None, description="Your version of the requirements: the later steps read it instead")
    )


EXAMPLE_EVENTS_URL = (
    "/api/prototypes/a3c5e7f9-2b4d-4f6a-8c0e-1a3b5c7d9e02/events?token=eyJhbGciOiJIUzI1NiJ9.e30.signature"
)


class PrototypeAccepted(BaseModel):
    """The pipeline runs in the background: poll `status_url` (polls do not count against the AI limit)."""

    model_config = examples(
        {
            "success": True,
            "prototype_id": "a3c5e7f9-2b4d-4f6a-8c0e-1a3b5c7d9e02",
            "status": "QUEUED",
            "status_url": "/api/prototypes/a3c5e7f9-2b4d-4f6a-8c0e-1a3b5c7d9e02",
            "events_url": EXAMPLE_EVENTS_URL,
            "workflow_id": "prototype-a3c5e7f9-2b4d-4f6a-8c0e-1a3b5c7d9e02",
        }
    )

    success: Literal[True] = True
    prototype_id: uuid.UUID
    status: PrototypeStatus
    status_url: str
    events_url: str = Field(description=EVENTS_URL)
    workflow_id: str


class RevisionRequest(Strict):
    """What to change in a completed prototype: the revision builds on its latest files."""

    feedback: Annotated[str, Field(min_length=1, max_length=5_000), AfterValidator(plain_text)]
    model: AIProviderName | None = Field(
        default=None, description="Preferred provider for the revision's calls; otherwise your service tier decides"
    )


class RevisionAccepted(BaseModel):
    """The revision runs in the background: poll `status_url` (polls do not count against the AI limit)."""

    success: Literal[True] = True
    prototype_id: uuid.UUID
    number: int
    status: PrototypeStatus
    status_url: str
    workflow_id: str


PREVIEW_LINK = (
    "The picture of the running app (a PNG, its main page as a headless browser showed it in the sandbox) as an "
    "absolute signed link: works in an <img src> with no Authorization header, for FILE_DOWNLOAD_URL_SECONDS; "
    "the picture is kept as long as the zip"
)


class PreviewView(BaseModel):
    """The picture of the running app: what `preview_link` shows."""

    file_id: uuid.UUID = Field(description="The PNG, kept as a file as long as the zip (it is also PREVIEW.png)")
    width: int
    height: int
    page_url_path: str = Field(description="The app's page in the picture")


class RevisionView(BaseModel):
    """One revision of a prototype: its feedback, and its own files and cost."""

    prototype_id: uuid.UUID
    number: int = Field(description="1 for the first revision, then 2, 3 ...")
    feedback: str
    status: PrototypeStatus
    current_step: str | None
    trying: AIProvider | None = Field(default=None, description="The provider being asked right now (live only)")
    verified: bool | None = Field(default=None, description="Its code passed the sandbox checks (null: not yet)")
    fix_rounds: int = 0
    cost_usd_micros: int
    cost_usd: float
    file_id: uuid.UUID | None
    download_url: str | None = Field(description="Its zip: GET with the access token; kept 24 hours")
    download_link: str | None = Field(default=None, description="Its zip as an absolute signed link")
    preview: PreviewView | None = Field(default=None, description="The picture of the revised app (null: none)")
    preview_link: str | None = Field(default=None, description=PREVIEW_LINK)
    preview_unavailable: str | None = Field(default=None, description="Completed without a picture: why")
    error: str | None
    created_at: datetime
    completed_at: datetime | None


class ApprovalView(BaseModel):
    """What a prototype AWAITING_APPROVAL asks you to approve or edit, and what each answer does: answer with
    POST `approval_url`."""

    step: str = Field(description="The step whose answer awaits approval: `requirements`")
    requirements: str = Field(
        description="The step's answer as the AI model wrote it, at most 20 000 characters: generated text, to "
        "show as text (never as markup) and to edit"
    )
    truncated: bool = Field(description="The answer was longer: `requirements` is its beginning")
    answer_by: datetime | None = Field(
        description="Unanswered by then, the prototype is cancelled (null: unknown right now)"
    )
    approval_url: str = Field(description="POST the answer here (ApprovalRequest)")
    on_approve: str = Field(description='What `{"approve": true}` does')
    on_edit: str = Field(description='What `{"approve": true, "edited_requirements": "..."}` does')
    on_decline: str = Field(description='What `{"approve": false}` does')


class PrototypeView(BaseModel):
    """A prototype as its owner sees it: live while the pipeline runs, the stored result after."""

    model_config = examples(
        {
            "prototype_id": "a3c5e7f9-2b4d-4f6a-8c0e-1a3b5c7d9e02",
            "status": "RUNNING",
            "source": "text",
            "idea": "An app that books climbing gyms: members see free slots and reserve one.",
            "steps": ["requirements", "plan", "code", "tests", "review", "package"],
            "steps_done": ["requirements", "plan"],
            "current_step": "code",
            "trying": "OPENAI",
            "progress_percent": 33,
            "template": False,
            "cost_usd_micros": 1840,
            "cost_usd": 0.00184,
            "file_id": None,
            "download_url": None,
            "download_link": None,
            "preview": None,
            "preview_link": None,
            "preview_unavailable": None,
            "error": None,
            "verified": None,
            "fix_rounds": 0,
            "approval": None,
            "created_at": "2026-05-04T09:40:00Z",
            "completed_at": None,
            "revisions": [],
            "events_url": EXAMPLE_EVENTS_URL,
        },
        {
            "prototype_id": "a3c5e7f9-2b4d-4f6a-8c0e-1a3b5c7d9e02",
            "status": "AWAITING_APPROVAL",
            "source": "text",
            "idea": "An app that books climbing gyms: members see free slots and reserve one.",
            "steps": ["requirements", "plan", "code", "tests", "review", "package"],
            "steps_done": ["requirements"],
            "current_step": None,
            "trying": None,
            "progress_percent": 16,
            "template": False,
            "cost_usd_micros": 620,
            "cost_usd": 0.00062,
            "file_id": None,
            "download_url": None,
            "download_link": None,
            "preview": None,
            "preview_link": None,
            "preview_unavailable": None,
            "error": None,
            "verified": None,
            "fix_rounds": 0,
            "approval": {
                "step": "requirements",
                "requirements": "# Requirements\n\n- Members see each gym's free slots.\n- A member reserves one.",
                "truncated": False,
                "answer_by": "2026-05-11T09:41:00Z",
                "approval_url": "/api/prototypes/a3c5e7f9-2b4d-4f6a-8c0e-1a3b5c7d9e02/approval",
                "on_approve": ON_APPROVE,
                "on_edit": ON_EDIT,
                "on_decline": ON_DECLINE,
            },
            "created_at": "2026-05-04T09:40:00Z",
            "completed_at": None,
            "revisions": [],
            "events_url": EXAMPLE_EVENTS_URL,
        },
    )

    prototype_id: uuid.UUID
    status: PrototypeStatus
    source: Literal["text", "voice"]
    idea: str = Field(description="The idea as submitted, or as transcribed from the voice message")
    steps: list[str] = Field(description="The pipeline, in order")
    steps_done: list[str]
    current_step: str | None
    trying: AIProvider | None = Field(default=None, description="The provider being asked right now (live only)")
    progress_percent: int
    template: bool = Field(
        default=False, description="True when the offline template answered every step so far: no model was asked"
    )
    cost_usd_micros: int
    cost_usd: float
    file_id: uuid.UUID | None
    download_url: str | None = Field(description="The zip: GET with the access token; kept 24 hours")
    download_link: str | None = Field(
        default=None,
        description="The zip as an absolute signed link: works in an <a href> with no Authorization header, "
        "for FILE_DOWNLOAD_URL_SECONDS; poll again for a fresh one",
    )
    preview: PreviewView | None = Field(
        default=None, description="COMPLETED: the picture of the running app (null: none, `preview_unavailable` why)"
    )
    preview_link: str | None = Field(default=None, description=PREVIEW_LINK)
    preview_unavailable: str | None = Field(
        default=None, description="Completed without a picture: why (no browser on this server, no web page, ...)"
    )
    events_url: str = Field(description=EVENTS_URL)
    error: str | None
    verified: bool | None = Field(
        default=None,
        description="The code passed its sandbox checks (false: still failing after the fix rounds; "
        "null: not checked yet)",
    )
    fix_rounds: int = Field(default=0, description="How often failing code went back to the code agent")
    approval: ApprovalView | None = Field(
        default=None, description="AWAITING_APPROVAL: the requirements to approve or edit, and what each answer does"
    )
    created_at: datetime
    completed_at: datetime | None
    revisions: list[RevisionView] = Field(
        default_factory=list, description="Its revisions, oldest first (POST /api/prototypes/{id}/revisions)"
    )


class PrototypeEventView(BaseModel):
    """One event of GET /api/prototypes/{id}/events: the `data:` of an SSE message whose `id:` is `id` and whose
    `event:` is `kind`. The stream ends after `completed` (with the download link) or `failed`."""

    id: int = Field(description="Send the last one seen as Last-Event-ID to resume after it")
    kind: PrototypeEventKind
    at: datetime
    step: str | None = None
    provider: AIProvider | None = Field(default=None, description="Who answered the step's model call")
    model_used: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost_usd_micros: int | None = Field(default=None, description="Of this call; on completed/failed, the total")
    round: int | None = Field(default=None, description="verification: 0 the code step's, n after fix round n")
    verified: bool | None = None
    failed_checks: list[str] | None = Field(default=None, description="verification: the checks that failed")
    file_id: uuid.UUID | None = None
    download_url: str | None = Field(default=None, description="completed: GET with the access token")
    download_link: str | None = Field(default=None, description="completed: an absolute signed link")
    preview_file_id: uuid.UUID | None = Field(default=None, description="completed: the picture of the app")
    preview_link: str | None = Field(default=None, description=f"completed: {PREVIEW_LINK}")
    preview_unavailable: str | None = Field(default=None, description="completed without a picture: why")
    error: str | None = Field(default=None, description="failed, cancelled: why")
    approval: ApprovalView | None = Field(
        default=None, description="approval_needed: the requirements to approve or edit, and what each answer does"
    )
