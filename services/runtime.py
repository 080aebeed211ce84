"""What every service needs, built once per process (the API's lifespan, a test, the CLI)."""

from __future__ import annotations

from dataclasses import dataclass

from temporalio.client import Client

from activities.storage import Storage
from models.db import Database
from settings import Settings


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    database: Database
    temporal: Client
    storage: Storage


class Service:
    """A domain's operations. Subclasses keep each database unit of work short (`self.database.session()`)
    and call Temporal only through services.temporal."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.settings = runtime.settings
        self.database = runtime.database
        self.temporal = runtime.temporal
        self.storage = runtime.storage
