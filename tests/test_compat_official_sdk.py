"""Our daemon driven by the official Resonate Python SDK 0.6.7 (PyPI ``resonate-sdk==0.6.7``).

Real processes only: our daemon with a TCP listener, the legacy poll port and a token (the official
SDK sends it as HTTP basic auth); two official workers (tests/compat/official_worker.py) in one group;
the official client (tests/compat/official_client.py). Checked: a recursive factorial whose every level
is a ``ctx.rpc`` to ``poll://any@<group>``, and human in the loop where the official worker waits on
``ctx.promise()`` and OUR SDK resolves that promise. Workers must still be alive at the end: the
official SDK calls ``os._exit(1)`` on most protocol deviations (docs/official-sdk-wire.md section 8).

The official SDK needs Python 3.12. The interpreter is ``$RESONATE_PYTHON312``, else ``python3.12`` on
PATH, else pyenv's newest 3.12.x. The SDK is installed once into a virtualenv cached outside the
repository (``$RESONATE_TEST_CACHE`` or ``~/.cache/resonate-tests``, ``sdk067``), unless
``bench/.venvs/resonate06`` already has it. The test skips, saying why, only when Python 3.12 or the
package cannot be had; with ``RESONATE_COMPAT_REQUIRED=1`` it fails instead.
"""

from __future__ import annotations

import fcntl
import glob
import json
import os
import select
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from resonate import Resonate
from tests.daemon_proc import Daemon, free_port

ROOT = Path(__file__).resolve().parent.parent
COMPAT = ROOT / "tests" / "compat"
BENCH_VENV = ROOT / "bench" / ".venvs" / "resonate06"
PIP_TIMEOUT = 300
CHECK_SDK = "import importlib.metadata as m, sys; sys.exit(m.version('resonate-sdk') != '0.6.7')"


def clean_env() -> dict[str, str]:
    """Our environment minus what would make the SDK's Python import this repository's ``resonate``."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}


def unavailable(reason: str) -> None:
    if os.environ.get("RESONATE_COMPAT_REQUIRED") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


def is_312(python: str) -> bool:
    try:
        out = subprocess.run([python, "-c", "import sys; print(sys.version_info[:2] == (3, 12))"],
                             capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and out.stdout.strip() == "True"


def find_python312() -> str | None:
    env = os.environ.get("RESONATE_PYTHON312")
    if env:
        return env if is_312(env) else None
    on_path = shutil.which("python3.12")
    if on_path and is_312(on_path):  # a pyenv shim fails here unless 3.12 is the selected version
        return on_path
    pyenv = shutil.which("pyenv")
    if pyenv:
        try:
            versions = subprocess.run([pyenv, "versions", "--bare"], capture_output=True, text=True,
                                      timeout=60, stdin=subprocess.DEVNULL).stdout.split()
            v312 = sorted((v for v in versions if v.startswith("3.12.") and v[5:].isdigit()),
                          key=lambda v: int(v[5:]))
            if v312:
                which = subprocess.run([pyenv, "which", "python3.12"], capture_output=True, text=True,
                                       timeout=60, stdin=subprocess.DEVNULL,
                                       env={**os.environ, "PYENV_VERSION": v312[-1]}).stdout.strip()
                if which and is_312(which):
                    return which
        except (OSError, subprocess.TimeoutExpired):
            pass
    for cand in sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.12*/bin/python3.12")), reverse=True):
        if is_312(cand):
            return cand
    return None


def has_sdk(python: Path) -> bool:
    if not python.exists():
        return False
    try:
        return subprocess.run([str(python), "-c", CHECK_SDK], capture_output=True, timeout=60, cwd="/tmp",
                              env=clean_env(), stdin=subprocess.DEVNULL).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def sdk_python() -> str:
    """A Python 3.12 with resonate-sdk 0.6.7, creating the cached venv on first use (under a file lock)."""
    if has_sdk(BENCH_VENV / "bin" / "python"):
        return str(BENCH_VENV / "bin" / "python")
    cache = Path(os.environ.get("RESONATE_TEST_CACHE") or Path.home() / ".cache" / "resonate-tests")
    venv, done = cache / "sdk067", cache / "sdk067.ok"
    python = venv / "bin" / "python"
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / "sdk067.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel test runs wait for one creator
        if done.exists() and has_sdk(python):
            return str(python)
        base = find_python312()
        if base is None:
            unavailable("no Python 3.12 found (RESONATE_PYTHON312, python3.12 on PATH, pyenv): "
                        "the official resonate-sdk 0.6.7 requires it")
        done.unlink(missing_ok=True)
        shutil.rmtree(venv, ignore_errors=True)  # a half-made venv from an interrupted run
        env = {**clean_env(), "PIP_NO_INPUT": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
        steps = [[str(base), "-m", "venv", str(venv)],
                 [str(python), "-m", "pip", "install", "--no-input", "resonate-sdk==0.6.7"]]
        for cmd in steps:
            try:
                r = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT, env=env, cwd="/tmp",
                                   stdin=subprocess.DEVNULL)
            except subprocess.TimeoutExpired:
                unavailable(f"{' '.join(cmd[-2:])} timed out after {PIP_TIMEOUT}s")
            if r.returncode != 0:
                unavailable(f"cannot install resonate-sdk==0.6.7 ({' '.join(cmd[:3])}): {r.stderr[-800:]}")
        if not has_sdk(python):
            unavailable("resonate-sdk 0.6.7 not importable after install")
        done.touch()
        return str(python)


def read_json_line(proc: subprocess.Popen[str], timeout: float, what: str) -> dict:  # type: ignore[type-arg]
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    line = proc.stdout.readline() if ready else ""
    if not line:
        proc.kill()
        raise AssertionError(f"{what} printed nothing within {timeout}s (exit {proc.wait()}): "
                             f"{proc.stderr.read() if proc.stderr else ''}")
    return dict(json.loads(line))


@pytest.fixture(scope="module")
def official_python() -> str:
    return sdk_python()


@pytest.fixture
def setup(official_python: str) -> Iterator[dict]:  # type: ignore[type-arg]
    port, poll_port, token = free_port(), free_port(), uuid.uuid4().hex
    daemon = Daemon("--http", f"127.0.0.1:{port}", "--poll-port", str(poll_port), "--token", token).start()
    group = f"compat-{uuid.uuid4().hex[:8]}"
    conn = ["--host", "http://127.0.0.1", "--store-port", str(port), "--poll-port", str(poll_port),
            "--group", group, "--auth", f"user:{token}"]
    workers: list[subprocess.Popen[str]] = []
    try:
        for i in range(2):
            w = subprocess.Popen([official_python, str(COMPAT / "official_worker.py"), *conn, "--pid", f"w{i}"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd="/tmp",
                                 env=clean_env(), stdin=subprocess.DEVNULL)
            workers.append(w)
            assert read_json_line(w, 60, f"official worker w{i}")["ready"] is True
        deadline = time.monotonic() + 30
        with daemon.client() as c:
            while len(c.get("/v1/status").json()["workers"].get(group, [])) < 2:
                assert time.monotonic() < deadline, f"workers never connected: {daemon.stderr()[-2000:]}"
                time.sleep(0.05)  # polling interval of a bounded wait

        def client(*args: str) -> dict:  # type: ignore[type-arg]
            r = subprocess.run([official_python, str(COMPAT / "official_client.py"), *args, *conn,
                                "--client-group", f"{group}-client", "--timeout", "60"],
                               capture_output=True, text=True, timeout=120, cwd="/tmp",
                               env=clean_env(), stdin=subprocess.DEVNULL)
            assert r.returncode == 0, f"official client {args} failed: {r.stderr[-3000:]}\n" \
                                      f"daemon: {daemon.stderr()[-3000:]}"
            return dict(json.loads(r.stdout.strip().splitlines()[-1]))

        yield {"daemon": daemon, "port": port, "token": token, "client": client, "workers": workers}
        for w in workers:
            err = w.stderr.read()[-3000:] if w.poll() is not None and w.stderr is not None else ""
            assert w.poll() is None, f"official worker died (exit {w.returncode}): {err}"
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
            w.wait(timeout=10)
            for f in (w.stdout, w.stderr):
                if f is not None:
                    f.close()
        daemon.stop()
        daemon.cleanup()


def test_factorial_with_rpc_across_two_official_workers(setup: dict) -> None:  # type: ignore[type-arg]
    root = f"fact-{uuid.uuid4().hex[:8]}"
    out = setup["client"]("factorial", "--id", root, "--n", "6")
    assert out == {"id": root, "result": 720}
    with setup["daemon"].client() as c:  # every level was its own invocation, all resolved
        for k in range(6):
            p = c.get(f"/promises/{root}" + ".1" * k)
            assert p.status_code == 200 and p.json()["state"] == "RESOLVED", p.text


def test_human_in_the_loop_resolved_by_our_sdk(setup: dict) -> None:  # type: ignore[type-arg]
    root = f"hitl-{uuid.uuid4().hex[:8]}"
    started = setup["client"]("human-start", "--id", root)
    assert started == {"id": root, "promise_id": f"{root}.1"}
    ours = Resonate.remote(url=f"http://127.0.0.1:{setup['port']}", token=setup["token"])
    try:
        p = ours.promises.resolve(id=f"{root}.1", data=json.dumps({"approved": True, "by": "ours"}))
        assert p.state == "RESOLVED"
    finally:
        ours.stop()
    assert setup["client"]("result", "--id", root) == {"id": root, "result": {"approved": True, "by": "ours"}}
