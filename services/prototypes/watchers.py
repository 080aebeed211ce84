"""Open progress streams, cheap while idle: ONE watcher per prototype and API process, shared by all its streams.

The watcher starts with a prototype's first stream and stops with its last. It asks the workflow for the events
after those it already has every PROTOTYPE_EVENTS_POLL_SECONDS (one query however many streams follow), reads
the row when no worker answers, and checks the streams' sessions every PROTOTYPE_EVENTS_SESSION_CHECK_SECONDS
(one query for all of them), so that a stream ends soon after its session is revoked. A stream only waits on
the watcher's condition: it wakes when something changed, and costs nothing in between.

Open streams are bounded per account and per process (PROTOTYPE_EVENTS_PER_USER, _PER_PROCESS): past either,
the next is a 429 with Retry-After.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress

from sqlalchemy.exc import SQLAlchemyError
from temporalio.client import WorkflowQueryFailedError
from temporalio.service import RPCError

from models.messages.prototypes import ENDING_EVENTS, PrototypeEvent
from models.tables import Prototype
from services.accounts import AccountService
from services.errors import TooManyRequests
from services.prototypes.views import stored_ending
from services.runtime import Runtime
from services.temporal import rpc_timeout
from workflows.prototype import PrototypeWorkflow, workflow_id

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5
"""A refused stream's Retry-After: an open one frees its place when its client leaves or it ends."""


class EventLog:
    """What one prototype's watcher knows: its events so far, whether it ended, which sessions were revoked.
    Every change bumps `version` and wakes the streams waiting on `changed`."""

    def __init__(self, runtime: Runtime, prototype_id: uuid.UUID) -> None:
        self.runtime = runtime
        self.prototype_id = prototype_id
        self.events: list[PrototypeEvent] = []
        self.known = False
        """The workflow (or the row) has answered at least once."""
        self.ended = False
        self.stored_ending: PrototypeEvent | None = None
        """The ending as the row records it, when no worker can answer for the workflow (its id is the stream's)."""
        self.failed = False
        """The watcher stopped on an error: its streams end, and their clients reconnect."""
        self.sessions: Counter[uuid.UUID] = Counter()
        self.revoked: set[uuid.UUID] = set()
        self.version = 0
        self.changed = asyncio.Condition()
        self.task: asyncio.Task[None] | None = None

    async def _bump(self) -> None:
        async with self.changed:
            self.version += 1
            self.changed.notify_all()

    async def watch(self) -> None:
        """The watcher: the workflow's events and the sessions' liveness, each on its own clock."""
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._poll())
                group.create_task(self._check_sessions())
        except Exception:
            log.exception("prototype %s: the event watcher failed; its streams end", self.prototype_id)
            self.failed = True
            await self._bump()

    async def _poll(self) -> None:
        settings = self.runtime.settings
        handle = self.runtime.temporal.get_workflow_handle_for(PrototypeWorkflow.run, workflow_id(self.prototype_id))
        while not self.ended:
            changed = not self.known
            try:
                new = await handle.query(PrototypeWorkflow.events, len(self.events), rpc_timeout=rpc_timeout(settings))
            except (RPCError, WorkflowQueryFailedError) as err:  # no worker answers right now: the row may
                log.info("prototype %s: event log unavailable (%s); asking the database", self.prototype_id, err)
                try:
                    self.stored_ending = await read_stored_ending(self.runtime, self.prototype_id)
                except SQLAlchemyError as db_err:
                    log.warning("prototype %s: row unavailable too (%s)", self.prototype_id, db_err)
                self.ended = self.stored_ending is not None
                changed = changed or self.ended
            else:
                self.events.extend(new)
                self.ended = bool(self.events) and self.events[-1].kind in ENDING_EVENTS
                changed = changed or bool(new)
            self.known = True
            if changed:
                await self._bump()
            if not self.ended:
                await asyncio.sleep(settings.prototype_events_poll_seconds)

    async def _check_sessions(self) -> None:
        accounts = AccountService(self.runtime)
        while True:
            await asyncio.sleep(self.runtime.settings.prototype_events_session_check_seconds)
            watched = set(self.sessions) - self.revoked
            try:
                live = await accounts.live_sessions(watched)
            except SQLAlchemyError as err:  # checked again next round; a stream may outlive its session that long
                log.warning("prototype %s: sessions not checked (%s)", self.prototype_id, err)
                continue
            if gone := watched - live:
                self.revoked |= gone
                await self._bump()

    def _changed_since(self, version: int) -> bool:
        return self.version != version

    async def follow(self, session_id: uuid.UUID, after: int, closes_at: float) -> AsyncIterator[PrototypeEvent]:
        """One stream: the events after the one with id `after`, as the watcher learns them, until the ending,
        `closes_at` (the loop's clock), or its session's revocation. A resume from the last id or past it gets the
        ending again, so that EventSource's client knows to stop rather than reconnect for ever."""
        seen = -1
        while True:
            async with self.changed:
                try:
                    async with asyncio.timeout_at(closes_at):
                        await self.changed.wait_for(functools.partial(self._changed_since, seen))
                except TimeoutError:
                    return
                seen = self.version
            if session_id in self.revoked or self.failed:
                return
            if not self.known:
                continue
            if self.stored_ending is not None:
                yield self.stored_ending.model_copy(update={"id": after + 1})
                return
            after = min(after, len(self.events))  # an id past the log's end: from the end the log has
            new = self.events[after:]
            for event in new:
                yield event
            after += len(new)
            if self.ended:
                if not new:
                    yield self.events[-1]
                return


class EventWatchers:
    """The process's watchers, one per prototype with open streams, and its streams' bounds."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.logs: dict[uuid.UUID, EventLog] = {}
        self.streams: Counter[uuid.UUID] = Counter()
        self.open = 0
        self._stopping: set[asyncio.Task[None]] = set()

    @contextmanager
    def slot(self, user_id: uuid.UUID) -> Iterator[Callable[[], None]]:
        """Take one of the user's and the process's stream places, or refuse with 429. Yields the release (for
        the response to call when the stream ends); it is also released if the block raises."""
        settings = self.runtime.settings
        if self.streams[user_id] >= settings.prototype_events_per_user:
            raise TooManyRequests(
                f"You already have {settings.prototype_events_per_user} event streams open; close one first",
                retry_after=RETRY_AFTER_SECONDS,
            )
        if self.open >= settings.prototype_events_per_process:
            raise TooManyRequests(
                "Too many event streams are open; please retry shortly", retry_after=RETRY_AFTER_SECONDS
            )
        self.streams[user_id] += 1
        self.open += 1
        released = False

        def release() -> None:
            nonlocal released
            if released:
                return
            released = True
            self.open -= 1
            self.streams[user_id] -= 1
            if not self.streams[user_id]:
                del self.streams[user_id]

        try:
            yield release
        except BaseException:
            release()
            raise

    @asynccontextmanager
    async def watching(self, prototype_id: uuid.UUID, session_id: uuid.UUID) -> AsyncIterator[EventLog]:
        """The prototype's shared log for one stream in this session: started with the first, stopped with the
        last."""
        log_ = self.logs.get(prototype_id)
        if log_ is None:
            log_ = self.logs[prototype_id] = EventLog(self.runtime, prototype_id)
            log_.task = asyncio.create_task(log_.watch(), name=f"prototype-events-{prototype_id}")
        log_.sessions[session_id] += 1
        try:
            yield log_
        finally:
            log_.sessions[session_id] -= 1
            if not log_.sessions[session_id]:
                del log_.sessions[session_id]
            if not log_.sessions and self.logs.get(prototype_id) is log_:
                del self.logs[prototype_id]
                self._stop(log_)

    def _stop(self, log_: EventLog) -> None:
        if log_.task is not None and not log_.task.done():
            log_.task.cancel()
            self._stopping.add(log_.task)  # kept until it has stopped
            log_.task.add_done_callback(self._stopping.discard)

    async def close(self) -> None:
        """At shutdown: every watcher stopped."""
        for log_ in list(self.logs.values()):
            self._stop(log_)
        self.logs.clear()
        for task in list(self._stopping):
            with suppress(asyncio.CancelledError):
                await task


async def read_stored_ending(runtime: Runtime, prototype_id: uuid.UUID) -> PrototypeEvent | None:
    """The last event as the row records it, once the pipeline has ended and its workflow cannot be asked."""
    async with runtime.database.session() as db:
        prototype = await db.get(Prototype, prototype_id)
    return stored_ending(prototype) if prototype is not None else None
