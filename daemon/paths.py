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


def peer_uid(sock: object) -> int | None:
    """The uid of the process at the other end of a connected Unix socket (``SO_PEERCRED``), or None
    where the OS cannot say (not Linux)."""
    import socket
    import struct

    if not hasattr(socket, "SO_PEERCRED"):
        return None
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))  # type: ignore[attr-defined]
    _pid, uid, _gid = struct.unpack("3i", raw)
    return int(uid)


def trusted_uid(uid: int | None) -> bool:
    """Us, or root (who can read our files anyway); None: the OS gave no answer, nothing to check."""
    return uid is None or uid == 0 or uid == os.geteuid()


def socket_dir_problem(directory: str) -> str | None:
    """Why a socket in ``directory`` could be replaced or watched by another user, or None if it cannot:
    the directory must be a real directory (not a symlink), owned by us (or root, when we are root), and
    writable by nobody else. A shared directory such as /tmp lets anyone remove or pre-create the socket."""
    import stat

    try:
        st = os.lstat(directory)
    except OSError as exc:
        return f"cannot inspect {directory}: {exc.strerror}"
    if stat.S_ISLNK(st.st_mode):
        return f"{directory} is a symbolic link (to {os.path.realpath(directory)}); name the real directory"
    if not stat.S_ISDIR(st.st_mode):
        return f"{directory} is not a directory"
    if st.st_uid != os.geteuid():
        return f"{directory} belongs to uid {st.st_uid}, not to you (uid {os.geteuid()})"
    if st.st_mode & 0o022:
        return (f"{directory} can be written by other users (mode {stat.S_IMODE(st.st_mode):o}): they could "
                "replace the socket")
    return None


DB_URL_SCHEMES = ("postgresql://", "postgres://")


def is_db_url(db: str | None) -> bool:
    """``postgresql://...`` or ``postgres://...`` (any case): a PostgreSQL database rather than a file."""
    return bool(db) and str(db).lower().startswith(DB_URL_SCHEMES)


def resolve_db(db: str | None) -> str:
    """What ``--db`` names: a database URL as it is, a file path made absolute, the default file if none."""
    if db and is_db_url(db):
        return db
    return os.path.abspath(db) if db else default_db_path()


def display_db(db: str) -> str:
    """How a database is named to people: a file path as it is, a URL with any password shown as ``***``
    (in its user part or a ``password=`` parameter). What is printed, logged and reported as a location."""
    if not is_db_url(db):
        return db
    from urllib.parse import unquote, urlsplit

    try:
        parts = urlsplit(db)
        netloc = parts.netloc
        if "@" in netloc:
            user, _, host = netloc.rpartition("@")
            if ":" in user:
                user = user.split(":", 1)[0] + ":***"
            netloc = f"{user}@{host}"
        pieces = [p for p in parts.query.split("&") if p]
        query = "&".join("password=***" if unquote(p.split("=", 1)[0]).lower() == "password" else p for p in pieces)
        return (f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "")
                + (f"#{parts.fragment}" if parts.fragment else ""))
    except ValueError:  # not even a URL: the scheme only, never the rest (it may hold a secret)
        return db.split("://", 1)[0] + "://***"
