"""Contact form: store the message, then ContactWorkflow emails the team and the sender."""

from __future__ import annotations

from models import search_attributes
from models.api.contact import ContactAccepted, ContactRequest
from models.messages.contact import ContactNotice
from models.tables import Contact
from services.accounts import Account
from services.idempotency import claim
from services.runtime import Service
from services.staging import staged
from services.temporal import start_workflow
from workflows.contact import START_POLICY, ContactWorkflow, workflow_id

SUMMARY = "Contact form message"  # no personal data: summaries are meant to stay legible


class ContactService(Service):
    async def submit(
        self,
        body: ContactRequest,
        sender: Account | None,
        *,
        ip: str,
        idempotency_key: str | None,
    ) -> ContactAccepted:
        """With an `Idempotency-Key`, a retried request finds the first one's message and workflow; the key is
        the signed-in sender's, or for an anonymous sender the key alone (never the IP: two senders behind one
        address must not meet). The same key with another message is refused (422), nothing dropped."""
        caller = f"user:{sender.id}" if sender else "anonymous"
        contact_id = await claim(self.database, "contact", caller, idempotency_key, body.model_dump(mode="json"))
        if idempotency_key is not None:  # without a key the id is new: there is nothing to find
            async with self.database.session() as db:
                existing = await db.get(Contact, contact_id)
            if existing is not None:
                return _accepted(existing)
        contact = Contact(id=contact_id, **body.model_dump(), user_id=sender.id if sender else None, ip=ip)
        async with staged(self.database, contact):
            await start_workflow(
                self.temporal,
                self.settings,
                ContactWorkflow.run,
                ContactNotice(contact_id=contact.id, team_address=self.settings.email_team_address),  # no details: ids
                id=workflow_id(contact.id),
                policy=START_POLICY,
                search_attributes=search_attributes.for_resource(
                    contact.id, contact.user_id, contact_key=search_attributes.contact_key(self.settings, contact.email)
                ),
                summary=SUMMARY,
            )
        return _accepted(contact)


def _accepted(contact: Contact) -> ContactAccepted:
    return ContactAccepted(contact_id=contact.id, status=contact.status, workflow_id=workflow_id(contact.id))
