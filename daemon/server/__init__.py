"""The daemon process: the HTTP API, push streams, the scheduler, the server lifecycle, the supervisor.

Everything here runs on one asyncio event loop that owns the engine (the supervisor's threads manage
worker processes and never touch the engine).
"""

from ..store import import_peewee_without_drivers

import_peewee_without_drivers()  # a daemon on SQLite never loads a PostgreSQL driver
