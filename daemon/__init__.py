"""resonate_daemon: the durable promise store, the engine and the daemon behind `resonate serve`.

Installed as the import package ``resonate_daemon`` (this folder is ``daemon/`` in the source tree);
never ``import daemon``, which is python-daemon's name. Imports neither ``resonate`` nor ``resonate_cli``.
"""

from __future__ import annotations

__version__ = "0.1.0"
