"""The dependency arrows of docs/architecture.md, checked in fresh interpreters (nothing imported by pytest
or by other tests can hide a violation):

- ``import resonate`` (what a remote worker loads) brings no server code: no engine, store, peewee,
  starlette, uvicorn, typer, rich, croniter, httpx, and not even asyncio or the daemon's server package;
- the text both the CLI and the browser UI show (``resonate.render``, ``resonate.history``) is as light:
  neither rich nor typer nor starlette nor jinja2 comes with it;
- ``resonate_ui`` never imports ``resonate_cli`` (both render ``resonate.render``; the CLI starts the UI);
- local mode loads the engine and the store only when ``Resonate.local()`` is called;
- ``resonate_daemon`` imports neither ``resonate`` nor ``resonate_cli`` nor ``resonate_ui`` (the browser UI is
  handed to ``serve``), whichever of its modules is loaded;
- the protocol kernel (``resonate_daemon.protocol``, ``resonate_daemon.errors``) is standard library only;
- no module outside ``resonate_daemon.store`` imports peewee;
- every module stays under 600 lines.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = {"resonate": "resonate", "resonate_cli": "resonate_cli", "resonate_daemon": "daemon",
            "resonate_ui": "resonate_ui"}

SERVER_SIDE = ["peewee", "starlette", "uvicorn", "typer", "rich", "croniter", "httpx", "anyio", "asyncio",
               "resonate_daemon.core", "resonate_daemon.store", "resonate_daemon.server", "resonate_cli",
               "resonate_ui", "jinja2"]


def loaded_after(code: str) -> list[str]:
    """The modules a fresh interpreter has loaded after running ``code``."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, cwd="/")
    assert out.returncode == 0, out.stderr
    return list(json.loads(out.stdout.strip().splitlines()[-1]))


def hits(modules: list[str], names: list[str]) -> list[str]:
    return sorted(m for m in modules if any(m == n or m.startswith(n + ".") for n in names))


def test_a_remote_worker_imports_no_server_code() -> None:
    modules = loaded_after("import resonate\nresonate.Resonate.remote(group='g', socket='/nonexistent/d.sock')")
    assert hits(modules, SERVER_SIDE) == []


def test_the_shared_formatting_is_as_light_as_the_sdk() -> None:
    modules = loaded_after("import resonate.render, resonate.history")
    assert hits(modules, SERVER_SIDE) == []


def test_the_ui_and_the_cli_share_formatting_not_imports() -> None:
    bad = [(os.path.relpath(path, ROOT), name) for package, path in source_files() if package == "resonate_ui"
           for name in imported_names(path) if name.split(".")[0] == "resonate_cli"]
    assert bad == []
    assert hits(loaded_after("import resonate_ui"), ["resonate_cli", "rich", "typer"]) == []


def test_local_mode_loads_the_engine_only_when_used() -> None:
    modules = loaded_after("import resonate")
    assert hits(modules, ["resonate_daemon.core", "resonate_daemon.store", "peewee", "resonate.local"]) == []
    modules = loaded_after("import resonate\nresonate.Resonate.local().stop()")
    assert hits(modules, ["resonate_daemon.core.engine", "resonate_daemon.store.sqlite", "peewee"]) != []
    assert hits(modules, ["starlette", "uvicorn", "typer", "rich", "resonate_daemon.server", "resonate_cli"]) == []


def daemon_modules() -> list[str]:
    names = []
    for dirpath, _, files in os.walk(os.path.join(ROOT, "daemon")):
        for f in files:
            if f.endswith(".py") and f != "__main__.py":
                rel = os.path.relpath(os.path.join(dirpath, f), os.path.join(ROOT, "daemon"))[:-3]
                parts = ["resonate_daemon", *rel.split(os.sep)]
                names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return sorted(names)


@pytest.mark.parametrize("module", daemon_modules())
def test_the_daemon_never_imports_the_sdk_or_the_cli(module: str) -> None:
    assert hits(loaded_after(f"import {module}"), ["resonate", "resonate_cli", "resonate_ui"]) == []


@pytest.mark.parametrize("module", ["resonate_daemon.protocol", "resonate_daemon.errors"])
def test_the_protocol_kernel_is_standard_library_only(module: str) -> None:
    before = set(loaded_after("pass"))
    after = set(loaded_after(f"import {module}"))
    ours = {m for m in after - before if m.split(".")[0] != "resonate_daemon"}
    third_party = sorted(m for m in ours if m.split(".")[0] not in sys.stdlib_module_names)
    assert third_party == []


def source_files() -> list[tuple[str, str]]:
    found = []
    for package, folder in PACKAGES.items():
        for dirpath, _, files in os.walk(os.path.join(ROOT, folder)):
            for f in files:
                if f.endswith(".py"):
                    path = os.path.join(dirpath, f)
                    found.append((package, path))
    return sorted(found)


def read(path: str) -> str:
    with open(path) as f:
        return f.read()


def imported_names(path: str) -> set[str]:
    tree = ast.parse(read(path), path)
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_peewee_stays_inside_the_store_package() -> None:
    outside = [os.path.relpath(p, ROOT) for _, p in source_files()
               if "peewee" in {n.split(".")[0] for n in imported_names(p)}
               and os.sep + "store" + os.sep not in p]
    assert outside == []


def test_the_cli_reaches_the_store_only_through_the_sdk() -> None:
    """No engine, store, server internals or raw HTTP in resonate_cli (the serve command's config and
    server are the one door to the daemon process, by design)."""
    allowed = {"resonate_daemon.protocol.records", "resonate_daemon.protocol.results", "resonate_daemon.paths", "resonate_daemon.server.config",
               "resonate_daemon.server.server"}
    bad = []
    for package, path in source_files():
        if package != "resonate_cli":
            continue
        for name in imported_names(path):
            if name.startswith("resonate_daemon") and name not in allowed:
                bad.append((os.path.relpath(path, ROOT), name))
            if name.split(".")[0] in ("http", "httpx", "urllib", "socket", "peewee", "sqlite3"):
                bad.append((os.path.relpath(path, ROOT), name))
    assert bad == []


def test_modules_stay_under_600_lines() -> None:
    long = {os.path.relpath(p, ROOT): n for _, p in source_files() if (n := len(read(p).splitlines())) > 600}
    assert long == {}


def test_import_time_is_reported() -> None:
    """Not a timed assertion (machines are noisy): the figure is printed for the record (-s shows it)."""
    code = "import time; t = time.perf_counter(); import resonate; print((time.perf_counter() - t) * 1000)"
    runs = sorted(float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                                       cwd="/").stdout) for _ in range(5))
    print(f"\nimport resonate: median {runs[2]:.1f} ms over 5 fresh interpreters (min {runs[0]:.1f})")
    assert runs[0] > 0


def module_name(package: str, path: str) -> str:
    folder = os.path.join(ROOT, PACKAGES[package])
    parts = [package, *os.path.relpath(path, folder)[:-3].split(os.sep)]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def runtime_imports(path: str, name: str, is_package: bool) -> set[str]:
    """Absolute names this module imports when it runs (imports under ``if TYPE_CHECKING:`` excluded)."""
    tree = ast.parse(read(path), path)
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    base = name if is_package else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base.rsplit(".", node.level - 1)[0] if node.level > 1 else base
                module = f"{anchor}.{node.module}" if node.module else anchor
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{a.name}" for a in node.names)
    return found


def test_modules_depend_one_way() -> None:
    """No import cycle among the project's modules (what runs, not what only type-checks)."""
    files = source_files()
    names = {module_name(pkg, path): path for pkg, path in files}
    graph: dict[str, set[str]] = {}
    for name, path in names.items():
        deps = runtime_imports(path, name, path.endswith("__init__.py"))
        graph[name] = {d for d in deps if d in names and d != name and not name.startswith(d + ".")}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(dep):] + [dep]))
            if dep not in state:
                visit(dep)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
