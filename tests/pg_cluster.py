"""A real PostgreSQL for the tests: ``RESONATE_TEST_POSTGRES`` (a URL of a database whose user may create
databases and schemas) if set, else a throwaway cluster made here with ``initdb`` and ``pg_ctl`` (found on
PATH or in ``/usr/lib/postgresql/*/bin``), started for the session and removed at its end, whatever
happened. It listens only on a Unix socket in a short directory under /tmp; as root, it runs as the
``postgres`` user (every directory on the way to its data must let that user in: a fresh 0755 directory
under /tmp, owned by it). Without server binaries (or psycopg) the PostgreSQL tests skip, saying why.

Each test gets a fresh schema (``fresh_url``; the URL's ``search_path`` names it: a few ms) or a fresh
database (``fresh_url(database=True)``: for a daemon in another process that should own it whole).
"""

from __future__ import annotations

import atexit
import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from urllib.parse import quote

ENV = "RESONATE_TEST_POSTGRES"


def find_bin_dir() -> str | None:
    """The directory of ``pg_ctl`` and ``initdb``: on PATH, else the newest under /usr/lib/postgresql."""
    found = shutil.which("pg_ctl")
    if found and shutil.which("initdb"):
        return os.path.dirname(found)
    dirs = [d for d in glob.glob("/usr/lib/postgresql/*/bin") if os.path.exists(os.path.join(d, "initdb"))]
    dirs.sort(key=lambda d: [int(x) if x.isdigit() else 0 for x in d.split("/")[-2].split(".")])
    return dirs[-1] if dirs else None


class Cluster:
    """One PostgreSQL server for the session. ``admin_url``: a database where tests create theirs."""

    def __init__(self, *, fsync: bool = False) -> None:
        self.fsync = fsync  # False (tests): commits are not flushed to disk; True: as in production (bench)
        self.admin_url = ""
        self.base: str | None = None  # our own cluster's directory (None: an outside server)
        self.bin_dir: str | None = None
        self.user: str | None = None  # the OS user running it, when not us
        self._n = itertools.count(1)
        self._tag = f"{os.getpid()}"
        self._schema_db = ""

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        outside = os.environ.get(ENV)
        if outside:
            self.admin_url = outside
            return
        bin_dir = find_bin_dir()
        if bin_dir is None:
            raise Unavailable("no PostgreSQL server binaries (initdb, pg_ctl) on PATH or in "
                              f"/usr/lib/postgresql/*/bin, and {ENV} is not set")
        self.bin_dir = bin_dir
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                raise Unavailable("running as root, and there is no `postgres` user to run the server as") from None
            self.user = "postgres"
        self.base = tempfile.mkdtemp(prefix="rpg-", dir="/tmp")  # short: the socket path must stay < 100 bytes
        atexit.register(self.stop)
        os.chmod(self.base, 0o755)
        if self.user:
            shutil.chown(self.base, self.user, self.user)
        data = os.path.join(self.base, "data")
        self._run([self._bin("initdb"), "-D", data, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C",
                   "--no-sync", "--no-instructions"])
        opts = f"-c listen_addresses='' -k {self.base} -c max_connections=200 -c shared_buffers=32MB"
        if not self.fsync:
            opts += " -c fsync=off -c full_page_writes=off"
        self._run([self._bin("pg_ctl"), "-D", data, "-l", os.path.join(self.base, "log"), "-w", "-t", "60",
                   "-o", opts, "start"])
        self.admin_url = f"postgresql://postgres@/postgres?host={quote(self.base, safe='/')}"

    def stop(self) -> None:
        if self.base is None:
            return
        base, self.base = self.base, None
        data = os.path.join(base, "data")
        if os.path.exists(os.path.join(data, "postmaster.pid")):
            subprocess.run([self._bin("pg_ctl"), "-D", data, "-m", "immediate", "-w", "stop"], user=self.user,
                           capture_output=True, timeout=60, check=False)
        shutil.rmtree(base, ignore_errors=True)

    def _bin(self, name: str) -> str:
        assert self.bin_dir is not None
        return os.path.join(self.bin_dir, name)

    def _run(self, cmd: list[str]) -> None:
        proc = subprocess.run(cmd, user=self.user, capture_output=True, text=True, timeout=120, cwd=self.base)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd[:1])} failed ({proc.returncode}): {proc.stdout}{proc.stderr}")

    def log(self) -> str:
        """The server's log (our own cluster), for a failure message."""
        if self.base is None:
            return ""
        try:
            with open(os.path.join(self.base, "log")) as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    # -- databases ---------------------------------------------------------------------------------
    def admin(self, sql: str, url: str | None = None) -> None:
        import psycopg

        with psycopg.connect(url or self.admin_url, autocommit=True) as conn:
            conn.execute(sql.encode())

    def url_of(self, database: str, schema: str | None = None) -> str:
        """The admin URL with another database (and a ``search_path`` naming ``schema``)."""
        from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

        parts = urlsplit(self.admin_url)
        query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "options"]
        if schema:
            query.append(("options", f"-csearch_path={schema}"))
        return urlunsplit((parts.scheme, parts.netloc, "/" + database, urlencode(query, safe="/"), ""))

    def fresh_url(self, *, database: bool = False) -> str:
        """A URL to an empty place of its own: a new schema (default) or a new database."""
        n = next(self._n)
        if database:
            name = f"rt_{self._tag}_{n}"
            self.admin(f'CREATE DATABASE "{name}"')
            return self.url_of(name)
        if not self._schema_db:
            self._schema_db = f"rt_{self._tag}_schemas"
            self.admin(f'CREATE DATABASE "{self._schema_db}"')
        name = f"s{n}"
        self.admin(f'CREATE SCHEMA "{name}"', self.url_of(self._schema_db))
        return self.url_of(self._schema_db, name)


class Unavailable(Exception):
    """No PostgreSQL to test against (the reason says why)."""


__all__ = ["ENV", "Cluster", "Unavailable", "find_bin_dir"]
