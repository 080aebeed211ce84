"""How a workflow may be started twice: each workflow module declares one of these next to its id function.

Pure data (safe in the sandbox); services/temporal.py applies it for every caller in the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy


@dataclass(frozen=True)
class StartPolicy:
    """`idempotent`: a second start with the same id is a retry and gets the existing run (running or closed).
    Otherwise a second start while one runs is a conflict the caller hears about (409).
    `restart_failed`: a run that failed, was terminated or timed out may be started again under its id (a
    retry after a start whose request gave up); a run that completed never is."""

    idempotent: bool
    restart_failed: bool = False

    @property
    def conflict_policy(self) -> WorkflowIDConflictPolicy:
        return WorkflowIDConflictPolicy.USE_EXISTING if self.idempotent else WorkflowIDConflictPolicy.FAIL

    @property
    def reuse_policy(self) -> WorkflowIDReusePolicy:
        # An id names one resource: its workflow runs once, and a closed one is never started again...
        if self.restart_failed:  # ...unless it did not finish its work
            return WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY
        return WorkflowIDReusePolicy.REJECT_DUPLICATE


ONCE_PER_RESOURCE = StartPolicy(idempotent=True)
"""The usual case: the id is derived from a row's id (or an Idempotency-Key), so a repeat is a retry."""
