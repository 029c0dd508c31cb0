"""The embedded broker: kombu's SQLAlchemy transport on a SQLite file, polled more often.

kombu polls this transport once a second, which on the demo left the worker idle for most of
each chunk's turn. A tenth of a second costs one small SQLite read and removes that wait.
Importing this module registers the `ldaqsqla+sqlite:///...` broker URL scheme.
"""

from kombu.transport import TRANSPORT_ALIASES
from kombu.transport.sqlalchemy import Transport as SqlAlchemyTransport

SCHEME = "ldaqsqla"
POLLING_SECONDS = 0.1


class Transport(SqlAlchemyTransport):
    polling_interval = POLLING_SECONDS


TRANSPORT_ALIASES.setdefault(SCHEME, f"{__name__}:Transport")

