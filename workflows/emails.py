"""The prototype's emails (requirements to approve, ready, failed, cancelled) and a revision's (ready, failed):
their words, built from the workflow's state.

Pure functions of their inputs, so PrototypeWorkflow calls them on replay and gets the same message (and
message id) every time. Addressed to the account by its id: the email activity reads the address
(workflows.mail.send_to_account).
"""

from __future__ import annotations

import html
import re
from datetime import datetime
from typing import Any

from activities.ai.offline import OFFLINE_MODEL
from activities.packaging import usd, verdict
from models.messages.email import StoredImage, UserEmail
from models.messages.prototypes import (
    ON_APPROVE,
    ON_DECLINE,
    ON_EDIT,
    PendingApproval,
    PrototypeOrder,
    PrototypeProgress,
    RevisionOrder,
    RevisionProgress,
    StepAnswer,
    StoredPreview,
    VerificationResult,
)


def _title(idea: str) -> str:
    words = " ".join(idea.split())
    if not words:
        return "from your voice message"
    return f"“{words[:77]}…”" if len(words) > 80 else f"“{words}”"


def ready_email(
    order: PrototypeOrder,
    progress: PrototypeProgress,
    expires_at: datetime,
    answers: list[StepAnswer],
    download_token: str,
    verification: VerificationResult | None = None,
    *,
    picture: StoredImage | None = None,
    preview_token: str | None = None,
) -> UserEmail:
    """The link works from the email without signing in: it carries a token for this one file. With a picture of
    the running app, an HTML alternative shows it in place, and the text gives its link."""
    link = f"{order.link_base_url.rstrip('/')}/api/files/{progress.file_id}?token={download_token}"
    offline = any(answer.model_used == OFFLINE_MODEL for answer in answers)
    note = (
        "\nNote: no AI model is configured on this server, so this is an offline template to fill in, "
        "not an AI model's work.\n"
        if offline
        else ""
    )
    text = (
        f"Hello,\n\nyour prototype {_title(progress.idea)} is ready.\n\n"
        f"Download it (signed in to Statex) until {expires_at:%Y-%m-%d %H:%M} UTC; then it is deleted:\n"
        f"{link}\n\n"
        f"Inside: {', '.join(answer.document for answer in answers)}, the code and a README, made in "
        f"{len(progress.steps)} steps. The AI calls cost {usd(progress.cost_usd_micros)}.\n"
        f"{_verification_note(verification, progress.fix_rounds)}{note}"
        f"{_picture_note(order, progress.preview, progress.preview_unavailable, preview_token)}\n-- The Statex team"
    )
    return UserEmail(
        user_id=order.user_id,
        message_id=f"prototype-{order.prototype_id}-ready",
        subject="Your prototype is ready",
        text=text,
        **_shown(text, picture, progress.preview),
    )


def _picture_note(
    order: PrototypeOrder, preview: StoredPreview | None, unavailable: str | None, preview_token: str | None
) -> str:
    """What the picture shows and where it is (a signed link, kept as long as the zip), or why there is none."""
    if preview is not None and preview_token is not None:
        link = f"{order.link_base_url.rstrip('/')}/api/files/{preview.file_id}/preview?token={preview_token}"
        return (
            f"\nA picture of your app's page {preview.page_url_path} as it ran in our sandbox "
            f"({preview.width}x{preview.height}, PREVIEW.png in the zip):\n{link}\n"
        )
    return f"\nNo picture of the app: {unavailable}.\n" if unavailable else ""


_LINK = re.compile(r"https?://[^\s<>\"']+")


def _linked(escaped: str) -> str:
    """The links of an escaped text as anchors, so that the HTML alternative's links work as the text's do."""
    return _LINK.sub(lambda link: f'<a href="{link.group(0)}">{link.group(0)}</a>', escaped)


def _shown(text: str, picture: StoredImage | None, preview: StoredPreview | None) -> dict[str, Any]:
    """With a picture: an HTML alternative that says what the text says, the picture in place (by Content-ID)
    where the text gives its link."""
    if picture is None or preview is None:
        return {}
    alt = f"Your app's page {preview.page_url_path} as it ran in our sandbox"
    image = (
        f'<p><img src="cid:{html.escape(picture.content_id)}" alt="{html.escape(alt)}" '
        f'width="{min(preview.width, 640)}" style="max-width:100%;border:1px solid #ccc"></p>'
    )
    paragraphs = [f"<p>{_linked(html.escape(part)).replace(chr(10), '<br>')}</p>" for part in text.split("\n\n")]
    return {"html": f"<!doctype html><html><body>{image}{''.join(paragraphs)}</body></html>", "images": [picture]}


def _verification_note(verification: VerificationResult | None, fix_rounds: int) -> str:
    """Whether the code passed its sandbox checks, said plainly either way (VERIFICATION.md has the details)."""
    if verification is None:
        return ""
    said = verdict(verification, fix_rounds)
    return f"\n{said[0].upper()}{said[1:]}. VERIFICATION.md in the zip lists every check and what it said.\n"


EMAILED_REQUIREMENTS_MAX_CHARS = 8_000
"""The most of the requirements an approval email quotes; the status has up to REQUIREMENTS_SHOWN_MAX_CHARS."""
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
"""Control characters (tab and newline kept), line separators and bidirectional overrides: never in a quote."""


def quoted(text: str, limit: int) -> tuple[str, bool]:
    """Model output as an email quotes it: data, not the email's own words. Control characters dropped, every
    line marked "> ", at most `limit` characters of it; and whether it was cut."""
    clean = _CONTROLS.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    shown = clean[:limit]
    return "\n".join(f"> {line}".rstrip() for line in shown.split("\n")), len(shown) < len(clean)


def approval_email(order: PrototypeOrder, idea: str, pending: PendingApproval) -> UserEmail:
    """The requirements awaiting approval, quoted, and what each answer does. The answer goes to the API, signed
    in: the email carries no token that could approve on its own."""
    status = f"{order.link_base_url.rstrip('/')}/api/prototypes/{order.prototype_id}"
    text, cut = quoted(pending.requirements, EMAILED_REQUIREMENTS_MAX_CHARS)
    cut = cut or pending.truncated
    deadline = f" by {pending.answer_by:%Y-%m-%d %H:%M} UTC" if pending.answer_by is not None else ""
    return UserEmail(
        user_id=order.user_id,
        message_id=f"prototype-{order.prototype_id}-approval",
        subject=f"Approve the {pending.step} of your prototype",
        text=(
            f"Hello,\n\nthe {pending.step} of your prototype {_title(idea)} are ready for you to check. Nothing "
            f"more is made until you answer{deadline}; without an answer by then, the prototype is cancelled.\n\n"
            f"The {pending.step}, as the AI model wrote them"
            f"{' (the beginning only: the status has more)' if cut else ''}:\n\n{text}\n\n"
            f"Answer with POST {status}/approval (signed in to Statex):\n"
            f'- approve, {{"approve": true}}: {ON_APPROVE}\n'
            f'- edit, {{"approve": true, "edited_requirements": "..."}}: {ON_EDIT}\n'
            f'- decline, {{"approve": false}}: {ON_DECLINE}\n\n'
            f"The status, with the {pending.step} in full: {status}\n\n-- The Statex team"
        ),
    )


def failure_email(order: PrototypeOrder, idea: str, reason: str) -> UserEmail:
    return UserEmail(
        user_id=order.user_id,
        message_id=f"prototype-{order.prototype_id}-failed",
        subject="Your prototype could not be made",
        text=(
            f"Hello,\n\nwe could not make your prototype {_title(idea)}.\n\nWhy: {reason}\n\n"
            "Nothing was kept. You can submit the idea again later.\n\n-- The Statex team"
        ),
    )


def cancelled_email(order: PrototypeOrder, idea: str, reason: str) -> UserEmail:
    return UserEmail(
        user_id=order.user_id,
        message_id=f"prototype-{order.prototype_id}-cancelled",
        subject="Your prototype was cancelled",
        text=(
            f"Hello,\n\nyour prototype {_title(idea)} was cancelled.\n\nWhy: {reason}\n\n"
            "Only the requirements were made; nothing after them was spent. You can submit the idea again.\n\n"
            "-- The Statex team"
        ),
    )


def revision_ready_email(
    order: RevisionOrder,
    progress: RevisionProgress,
    expires_at: datetime,
    download_token: str,
    verification: VerificationResult | None,
    *,
    picture: StoredImage | None = None,
    preview_token: str | None = None,
) -> UserEmail:
    """As `ready_email`, for revision `order.number`: its own zip, its own cost, its own picture."""
    link = f"{order.link_base_url.rstrip('/')}/api/files/{progress.file_id}?token={download_token}"
    text = (
        f"Hello,\n\nrevision {order.number} of your prototype {_title(order.idea)} is ready: the files "
        f"from before, changed as you asked.\n\n"
        f"Download it (signed in to Statex) until {expires_at:%Y-%m-%d %H:%M} UTC; then it is deleted:\n"
        f"{link}\n\nThe AI calls of this revision cost {usd(progress.cost_usd_micros)}.\n"
        f"{_verification_note(verification, progress.fix_rounds)}"
        f"{_picture_note(order, progress.preview, progress.preview_unavailable, preview_token)}\n-- The Statex team"
    )
    return UserEmail(
        user_id=order.user_id,
        message_id=f"prototype-{order.prototype_id}-revision-{order.number}-ready",
        subject=f"Revision {order.number} of your prototype is ready",
        text=text,
        **_shown(text, picture, progress.preview),
    )


def revision_failure_email(order: RevisionOrder, reason: str) -> UserEmail:
    return UserEmail(
        user_id=order.user_id,
        message_id=f"prototype-{order.prototype_id}-revision-{order.number}-failed",
        subject=f"Revision {order.number} of your prototype could not be made",
        text=(
            f"Hello,\n\nwe could not make revision {order.number} of your prototype {_title(order.idea)}.\n\n"
            f"Why: {reason}\n\nThe prototype and its earlier revisions are as they were. You can ask for the "
            "revision again later.\n\n-- The Statex team"
        ),
    )
