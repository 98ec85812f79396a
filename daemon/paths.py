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


def read_token_file(path: str) -> str:
    """A token from a file only its owner can read (a token on a command line shows in ``ps``)."""
    from . import errors

    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise errors.InvalidRequest(f"cannot read token file {path!r}: {exc.strerror}") from None
    try:
        mode = os.fstat(fd).st_mode
        if mode & 0o077:
            raise errors.InvalidRequest(f"token file {path!r} can be read by others (mode {mode & 0o777:o}); "
                                        f"chmod 600 {path}")
        token = os.read(fd, 4096).decode("utf-8", "replace").strip()
    finally:
        os.close(fd)
    if not token:
        raise errors.InvalidRequest(f"token file {path!r} is empty")
    return token
