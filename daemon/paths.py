"""Where things live by default: the one module that asks platformdirs (the SDK and the daemon agree).

Imported by ``import resonate`` for the default socket, so it stays small: platformdirs is loaded only
when a default is asked for.
"""

from __future__ import annotations

import os
import warnings

APP_NAME = "resonate"
SOCKET_NAME = "resonate.sock"
DB_NAME = "resonate.db"
# AF_UNIX paths stop at 108 bytes including the NUL (Linux); macOS allows 104.
MAX_SOCKET_PATH = 103


def default_socket_path() -> str:
    """Under the user runtime dir (tmpfs, per user, cleaned at logout); /tmp if that path is too long."""
    import platformdirs

    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset and falls back to /tmp/runtime-UID: fine here.
        warnings.simplefilter("ignore")
        base = platformdirs.user_runtime_dir(APP_NAME)
    path = os.path.join(base, SOCKET_NAME)
    if len(path.encode()) > MAX_SOCKET_PATH:
        path = os.path.join("/tmp", f"resonate-{os.getuid()}", SOCKET_NAME)
    return path


def default_db_path() -> str:
    import platformdirs

    return os.path.join(platformdirs.user_data_dir(APP_NAME), DB_NAME)
