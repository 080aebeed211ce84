"""Prototypes: an idea (typed, or a voice message) through PrototypeWorkflow; its status, live or stored; its
progress stream; and revisions of a completed one (PrototypeRevisionWorkflow), each with its own row, files and
cost. One module per job:

commands.py  submit (typed or voice), approve, revise: rows staged, workflows started or updated
status.py    a prototype's or revision's status: its workflow's query while it runs, the row after
stream.py    the progress stream: who an events URL lets in, and the events as the API sends them
watchers.py  one watcher per prototype and process, shared by its streams; the streams' bounds
views.py     the mappers to the API's shapes, from the workflow's messages or from the rows
links.py     the URLs the answers carry
records.py   the reads every job shares: the row and its owner, its revisions, whether a template answered

No database connection is held while Temporal is asked or waited on.
"""

from __future__ import annotations

from services.prototypes.commands import PrototypeCommands, VoiceChains
from services.prototypes.status import MAX_WAIT_SECONDS, PrototypeStatusReads
from services.prototypes.stream import PrototypeStream
from services.prototypes.watchers import EventWatchers

__all__ = ["MAX_WAIT_SECONDS", "EventWatchers", "PrototypeService", "VoiceChains"]


class PrototypeService(PrototypeCommands, PrototypeStatusReads, PrototypeStream):
    """Everything the API asks of prototypes, one service for its dependency (api.deps)."""
