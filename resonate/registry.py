"""Registered functions by name and version (the ``Function`` wrapper lives beside ``Resonate``)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from .errors import NotRegistered


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
        registration = getattr(func, "registration", None)  # a Function: what it was registered as
        if isinstance(registration, tuple):
            return registration[0], registration[1]
        found = self._by_func.get(func)
        if found is not None:
            return found
        if must_be_registered:
            raise NotRegistered(f"{getattr(func, '__qualname__', func)!r} is not registered; "
                                "use @resonate.register or pass its registered name")
        return getattr(func, "__qualname__", getattr(func, "__name__", "anonymous")), 0

    def names(self) -> list[str]:
        return sorted(self._by_name)

    def has(self, name: str, version: int = 0) -> bool:
        """Is ``name`` registered here (at ``version``; 0: any)?"""
        versions = self._by_name.get(name)
        return bool(versions) and (version == 0 or version in versions)  # type: ignore[operator]

    def announced(self) -> dict[str, list[int]]:
        """What a worker tells the daemon it can run: every name with its versions."""
        with self._lock:
            return {n: sorted(vs) for n, vs in sorted(self._by_name.items())}

    def entries(self) -> list[tuple[str, int, Callable[..., Any]]]:
        """Every (name, version, function) registered, by name then version."""
        with self._lock:
            return [(n, v, f) for n, vs in sorted(self._by_name.items()) for v, f in sorted(vs.items())]
