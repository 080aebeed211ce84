"""POST /api/contact: store the message, then ContactWorkflow emails the team and the sender."""

from __future__ import annotations

from contextlib import suppress
from datetime import timedelta

from fastapi import APIRouter, Request, status
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from api.deps import IdempotencyKey, OptionalUser, SessionDep, SettingsDep, TemporalClient, resource_id, stage
from api.ratelimit import RateLimitedRoute, client_identity, client_ip
from models.api.contact import ContactAccepted, ContactRequest
from models.messages.contact import ContactNotice
from models.tables import Contact
from workflows import search_attributes
from workflows.contact import ContactWorkflow, workflow_id

router = APIRouter(prefix="/api/contact", tags=["contact"], route_class=RateLimitedRoute)


@router.post("", status_code=status.HTTP_202_ACCEPTED, response_model=ContactAccepted)
async def submit_contact(
    body: ContactRequest,
    request: Request,
    user: OptionalUser,
    db: SessionDep,
    temporal: TemporalClient,
    settings: SettingsDep,
    idempotency_key: IdempotencyKey = None,
) -> ContactAccepted:
    """With an `Idempotency-Key`, a retried request finds the first one's message and workflow."""
    contact_id = resource_id("contact", client_identity(request, settings), idempotency_key)
    contact = await db.get(Contact, contact_id)
    if contact is None:
        contact = Contact(id=contact_id, **body.model_dump(), user_id=user.id if user else None, ip=client_ip(request))
        await stage(db, contact)
    notice = ContactNotice(contact_id=contact.id, team_address=settings.email_team_address, **body.model_dump())
    with suppress(WorkflowAlreadyStartedError):  # a retry after the first request's workflow finished
        await temporal.start_workflow(
            ContactWorkflow.run,
            notice,
            id=workflow_id(contact.id),
            task_queue=settings.temporal_task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            search_attributes=search_attributes.for_resource(contact.id, contact.user_id),
            static_summary=f"Contact form from {body.email}",
            rpc_timeout=timedelta(seconds=settings.temporal_rpc_timeout_seconds),
        )
    await db.commit()
    return ContactAccepted(contact_id=contact.id, status=contact.status, workflow_id=workflow_id(contact.id))
