"""The browser UI of the daemon (``resonate ui``): server-rendered pages under /ui, live over SSE.

``resonate serve`` hands ``create_ui`` to the daemon's ``serve(config, ui=create_ui)``, which mounts it
on every listener (and on ``--ui-port``); the daemon itself never imports this package, and neither does
the SDK. Each page reads through the SDK's objects (``resonate.promises``, ``.workflows``, ``.schedules``)
over a transport that runs the protocol's ops on the daemon's engine, on its event loop, as the HTTP API
does: one home for each verb.
"""

from __future__ import annotations

from .app import create_ui

__all__ = ["create_ui"]
