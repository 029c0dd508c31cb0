"""What the service needs, built once per process from one Settings object."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ldaq.db import Database
from ldaq.doorbell import BrokerUnavailable, Doorbell
from ldaq.errors import InvalidRequest, ServiceUnavailable
from ldaq.model_pairs import ModelPairSpec, load_model_pairs
from ldaq.settings import Settings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Backend:
    """Settings, database, doorbell and the model pairs on offer; the API keeps one per app."""

    settings: Settings
    database: Database
    doorbell: Doorbell
    model_pairs: dict[str, ModelPairSpec]

    @classmethod
    def from_settings(cls, settings: Settings) -> Backend:
        return cls(settings, Database(settings.database_url), Doorbell(settings), load_model_pairs(settings))

    def close(self) -> None:
        self.database.dispose()

    def require_model_pair(self, name: str) -> None:
        """A request names a pair from the server's registry, never a path; anything else is refused."""
        if name not in self.model_pairs:
            offered = sorted(self.model_pairs)
            raise InvalidRequest(
                f"unknown model pair {name!r}; this server offers {offered}",
                code="unknown_model_pair",
                details={"model_pair": name, "offered": offered},
            )

    def check_broker(self) -> None:
        """Refuse within about a second while the broker is down, before anything is promised.

        The client hears which dependency is down, never its address: that goes to the log.
        """
        try:
            self.doorbell.check()
        except BrokerUnavailable as error:
            logger.warning("broker check failed: %s", error)
            raise ServiceUnavailable(
                "the broker is not answering; nothing was stored, try again shortly", code="broker_unavailable"
            ) from error

