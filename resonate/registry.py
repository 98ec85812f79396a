"""Registered functions: names and versions, and the ``Function`` wrapper ``@resonate.register`` returns."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

from .errors import NotRegistered
from .options import Options

if TYPE_CHECKING:
    from .handle import Handle
    from .resonate import Resonate

P = ParamSpec("P")
R = TypeVar("R")


class Registry:
    """name -> {version -> function}; version 0 asks for the latest."""

    def __init__(self) -> None:
        self._by_name: dict[str, dict[int, Callable[..., Any]]] = {}
        self._by_func: dict[Callable[..., Any], tuple[str, int]] = {}
        self._lock = threading.Lock()

    def add(self, func: Callable[..., Any], name: str, version: int) -> None:
        if not isinstance(name, str) or not name:
            raise TypeError("name must be a non-empty str")
        if not isinstance(version, int) or version < 1:
            raise ValueError(f"version must be an int >= 1, got {version!r}")
        with self._lock:
            versions = self._by_name.setdefault(name, {})
            existing = versions.get(version)
            if existing is not None and existing is not func:
                raise ValueError(f"function {name!r} version {version} is already registered")
            versions[version] = func
            self._by_func[func] = (name, version)

    def get(self, name: str, version: int = 0) -> tuple[Callable[..., Any], int]:
        versions = self._by_name.get(name)
        if not versions:
            known = ", ".join(sorted(self._by_name)) or "none"
            raise NotRegistered(f"function {name!r} is not registered here (registered: {known})")
        if version == 0:
            version = max(versions)
        if version not in versions:
            raise NotRegistered(f"function {name!r} has no version {version} (have {sorted(versions)})")
        return versions[version], version

    def name_of(self, func: Callable[..., Any] | str, must_be_registered: bool = False) -> tuple[str, int]:
        if isinstance(func, str):
            return func, 0
        if isinstance(func, Function):
            return func.name, func.version
        found = self._by_func.get(func)
        if found is not None:
            return found
        if must_be_registered:
            raise NotRegistered(f"{getattr(func, '__qualname__', func)!r} is not registered; "
                                "use @resonate.register or pass its registered name")
        return getattr(func, "__qualname__", getattr(func, "__name__", "anonymous")), 0

    def names(self) -> list[str]:
        return sorted(self._by_name)


class Function(Generic[P, R]):
    """A registered function: call it plainly, or durably with ``run`` / ``begin_run`` / ``rpc``.

    Example::

        @resonate.register
        def greet(ctx: Context, name: str) -> str:
            return f"hello {name}"

        greet.run("greet-ada", "ada")                            # 'hello ada'
        greet.options(timeout=60).begin_run("greet-bob", "bob")  # Handle
    """

    def __init__(self, resonate: Resonate, name: str, version: int, func: Callable[..., Any],
                 opts: Options) -> None:
        functools.update_wrapper(self, func)
        self._resonate = resonate
        self.name = name
        self.version = version
        self.func = func
        self._opts = opts

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.func(*args, **kwargs)

    def __repr__(self) -> str:
        return f"Function({self.name!r}, version={self.version})"

    def options(self, **opts: Any) -> Function[P, R]:
        """The same function with other default options for its invocations."""
        return Function(self._resonate, self.name, self.version, self.func, self._opts.merge(**opts))

    def _client(self) -> Resonate:
        return self._resonate._with_opts(self._opts.merge(version=self.version))

    def run(self, id: str, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run durably in this process (or pick up the stored result) and return the value."""
        return self.begin_run(id, *args, **kwargs).result()

    def begin_run(self, id: str, *args: P.args, **kwargs: P.kwargs) -> Handle[R]:
        return self._client().begin_run(id, self, *args, **kwargs)

    def rpc(self, id: str, *args: P.args, **kwargs: P.kwargs) -> R:
        """Have a worker of the target group run it; wait for the value."""
        return self.begin_rpc(id, *args, **kwargs).result()

    def begin_rpc(self, id: str, *args: P.args, **kwargs: P.kwargs) -> Handle[R]:
        return self._client().begin_rpc(id, self.name, *args, **kwargs)


# Exported for typing: what a registered generator function's run() returns.
GeneratorOf = Generator[Any, Any, R]
