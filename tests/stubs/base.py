"""What every domain's stubs share: the record of a call, and `Stubs`, which notes each call in the outside world's
record (and holds it while a test asks) before the stub answers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from temporalio import activity

if TYPE_CHECKING:
    from stubs import Outside


@dataclass(frozen=True)
class Call:
    name: str
    argument: Any


class Stubs:
    """One domain's stub activities, answering as `outside` says. `all()` lists them for the worker."""

    def __init__(self, outside: Outside) -> None:
        self.outside = outside

    def all(self) -> list[Callable[..., Any]]:
        raise NotImplementedError

    async def _note(self, argument: Any) -> None:
        name = activity.info().activity_type
        self.outside.calls.append(Call(name, argument))
        if (gate := self.outside.held.get(name)) is not None:
            await gate.wait()
