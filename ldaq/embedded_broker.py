"""The embedded broker: kombu's SQLAlchemy transport on a SQLite file, polled more often, and safe against
processes that set up a fresh broker file at the same moment.

kombu polls this transport once a second, which on the demo left the worker idle for most of
each chunk's turn. A tenth of a second costs one small SQLite read and removes that wait.
Importing this module registers the `ldaqsqla+sqlite:///...` broker URL scheme.
"""

from kombu.transport import TRANSPORT_ALIASES
from kombu.transport.sqlalchemy import Channel as SqlAlchemyChannel
from kombu.transport.sqlalchemy import Transport as SqlAlchemyTransport
from sqlalchemy.exc import IntegrityError, OperationalError

SCHEME = "ldaqsqla"
POLLING_SECONDS = 0.1
# Setting up a fresh file fails only on a table or index that another process made after this one looked,
# and the next try sees it: kombu's two tables and three indexes end it within five failures.
SETUP_TRIES = 10


class Channel(SqlAlchemyChannel):
    """kombu's channel, whose locks are per process: on a fresh broker file the API's readiness check and first
    ring and the worker's start could each create the tables and the queue, and the loser died of it (the worker
    once did, at start, in a demo)."""

    def _open(self):
        """kombu's, but tables another process created between its check and its create are used, not raised on."""
        for _ in range(SETUP_TRIES - 1):
            try:
                return super()._open()
            except OperationalError as error:
                if "already exists" not in str(error):
                    raise
        return super()._open()

    def _get_or_create(self, queue: str):
        """kombu's, but a queue another process created between its lookup and its insert is used, not raised on."""
        try:
            return super()._get_or_create(queue)
        except IntegrityError:
            self.session.rollback()
            return self.session.query(self.queue_cls).filter(self.queue_cls.name == queue).one()


class Transport(SqlAlchemyTransport):
    Channel = Channel
    polling_interval = POLLING_SECONDS


TRANSPORT_ALIASES.setdefault(SCHEME, f"{__name__}:Transport")
