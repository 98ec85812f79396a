"""Create (idempotently) the virtualenvs of the benchmark peers.

    python bench/peers/venvs.py dbos|resonate06 [...]

Stdlib only, Python 3.11+. Each venv lives in ``bench/.venvs/NAME`` (git-ignored):

* ``dbos``: Python 3.11 (the interpreter running this script, or ``python3.11``),
  ``dbos==3.4.0`` and ``pysqlite3-binary``. DBOS 3.4 needs a newer SQLite than this
  machine's 3.40.1, so ``dbos_w.py`` puts ``pysqlite3`` in ``sys.modules['sqlite3']``
  before it imports dbos.
* ``resonate06``: Python 3.12 (``python3.12`` on PATH, or pyenv's 3.12),
  ``resonate-sdk==0.6.7``.

Prints one JSON line: ``{"venv": NAME, "ok": true, "python": PATH, "note": ...}`` or
``{"venv": NAME, "ok": false, "error": ...}`` (exit code 1). A peer that cannot be
installed is reported, never dropped silently.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent
VENVS = BENCH / ".venvs"


@dataclass(frozen=True)
class Peer:
    name: str
    python_version: str  # "3.11"
    packages: tuple[str, ...]
    probe: str  # a statement run in the venv to prove the install works
    note: str


PEERS = {
    "dbos": Peer(
        "dbos",
        "3.11",
        ("dbos==3.4.0", "pysqlite3-binary"),
        "import sys, pysqlite3; sys.modules['sqlite3'] = pysqlite3; import dbos; "
        "print(pysqlite3.sqlite_version)",
        "system SQLite 3.40.1 is too old for DBOS 3.4: dbos_w.py sets "
        "sys.modules['sqlite3'] = pysqlite3 (pysqlite3-binary) before importing dbos",
    ),
    "resonate06": Peer(
        "resonate06",
        "3.12",
        ("resonate-sdk==0.6.7",),
        "from resonate import Resonate, Context; import importlib.metadata as m; "
        "print(m.version('resonate-sdk'))",
        "official Resonate Python SDK 0.6.7 (local mode keeps its store in memory)",
    ),
    # Not a peer: matplotlib for bench/run's bar chart, kept out of the project's dependencies.
    "plot": Peer("plot", "3.11", ("matplotlib",), "import matplotlib; print(matplotlib.__version__)",
                 "matplotlib for the bar chart of bench/run (bench/chart.py)"),
}


def find_python(version: str) -> str | None:
    """An interpreter for ``version`` ("3.12"): this one, PATH, then pyenv."""
    if f"{sys.version_info.major}.{sys.version_info.minor}" == version:
        return sys.executable
    candidates: list[str] = []
    on_path = shutil.which(f"python{version}")
    if on_path:
        candidates.append(on_path)
    pyenv = shutil.which("pyenv")
    if pyenv:
        root = subprocess.run([pyenv, "root"], capture_output=True, text=True).stdout.strip()
        if root:
            candidates += sorted(glob.glob(f"{root}/versions/{version}.*/bin/python{version}"),
                                 reverse=True)
    candidates += sorted(glob.glob(os.path.expanduser(
        f"~/.pyenv/versions/{version}.*/bin/python{version}")), reverse=True)
    for exe in candidates:
        # A pyenv shim exists even when no 3.x version is selected: ask it for real.
        out = subprocess.run([exe, "-c", "import sys; print('%d.%d' % sys.version_info[:2], "
                              "sys.executable)"], capture_output=True, text=True)
        parts = out.stdout.split()
        if out.returncode == 0 and len(parts) == 2 and parts[0] == version:
            return parts[1]
    return None


def venv_python(name: str) -> Path:
    return VENVS / name / "bin" / "python"


def _run(cmd: list[str], timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def _probe(py: Path, peer: Peer) -> subprocess.CompletedProcess[str]:
    # -I: isolated, so the working directory is not on sys.path: run from the repo root,
    # `import resonate` would find this project's own package instead of the SDK.
    return _run([str(py), "-I", "-c", peer.probe], 120)


def ensure_venv(name: str) -> Path | str:
    """Create the peer's venv if needed; return its python, or an error message."""
    peer = PEERS.get(name)
    if peer is None:
        return f"unknown peer {name!r}; known: {', '.join(PEERS)}"
    py = venv_python(name)
    # Idempotent: an existing venv that passes the probe is kept as it is.
    if py.exists() and _probe(py, peer).returncode == 0:
        return py
    base = find_python(peer.python_version)
    if base is None:
        return f"no Python {peer.python_version} found (PATH, pyenv)"
    target = VENVS / name
    if target.exists():
        shutil.rmtree(target)
    VENVS.mkdir(parents=True, exist_ok=True)
    try:
        made = _run([base, "-m", "venv", str(target)])
        if made.returncode != 0:
            return f"venv creation failed: {made.stderr.strip()[-500:]}"
        pip = _run([str(py), "-m", "pip", "install", "--disable-pip-version-check", "-q",
                    *peer.packages])
        if pip.returncode != 0:
            return f"pip install {' '.join(peer.packages)} failed: {pip.stderr.strip()[-800:]}"
        probe = _probe(py, peer)
        if probe.returncode != 0:
            return f"installed but import fails: {probe.stderr.strip()[-800:]}"
    except subprocess.TimeoutExpired as exc:
        return f"timed out: {' '.join(map(str, exc.cmd))[:200]}"
    return py


def main(argv: list[str]) -> int:
    names = [a for a in argv if not a.startswith("-")]
    if not names:
        print("usage: python bench/peers/venvs.py dbos|resonate06 [...]", file=sys.stderr)
        return 2
    status = 0
    for name in names:
        result = ensure_venv(name)
        if isinstance(result, Path):
            line = {"venv": name, "ok": True, "python": str(result),
                    "packages": list(PEERS[name].packages), "note": PEERS[name].note}
        else:
            line = {"venv": name, "ok": False, "error": result}
            status = 1
        print(json.dumps(line), flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
