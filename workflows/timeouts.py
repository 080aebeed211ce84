"""How long an activity may run, by the kind of work, so that a worker lost mid-activity costs seconds.

Temporal retries an activity whose worker died only when one of its timeouts runs out, so the timeout that
notices the loss must be short:
- a database write or read is a few seconds of work: DATABASE_CALL start-to-close, retried by the caller's
  policy (and bounded by its schedule-to-close where the caller has a deadline);
- a long call (a model, a gateway, the sandbox, packaging, storage, email) keeps the start-to-close its work
  needs and adds HEARTBEAT: the worker heartbeats for every such activity while it runs (the worker's
  HeartbeatWhileRunning interceptor), so a dead worker is noticed after HEARTBEAT, not the whole call.

Changing these options changes no command of a workflow's history (replay compares command and activity types,
not their timeouts), so running workflows pick them up for the activities they schedule next.
"""

from __future__ import annotations

from datetime import timedelta

DATABASE_CALL = timedelta(seconds=10)
"""Start-to-close of one short unit of work in PostgreSQL: an upsert, a status read, a milestone written."""

HEARTBEAT = timedelta(seconds=10)
"""Heartbeat timeout of a long call: the worker heartbeats a few times within it while the call runs."""
