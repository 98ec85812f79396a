"""What a durable function sees: ``Context`` and the calls it yields.

A generator function yields calls; the runtime carries each out durably and sends the result back::

    @resonate.register
    def order(ctx: Context, order_id: int):
        total = yield ctx.run(price, order_id)            # a durable step, in this process
        receipt = yield ctx.rpc("charge", order_id, total) # any worker of the target group runs it
        p = yield ctx.promise()                           # a promise only the outside world completes
        approved = yield p                                # wait for it (resonate promises resolve ...)
        return receipt if approved else None

``ctx.run``/``ctx.rpc`` wait for the result; ``ctx.begin_run``/``ctx.begin_rpc`` return a promise at once,
to ``yield`` later (fan-out).
"""

from __future__ import annotations

import random as _random
import time as _time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Concatenate, Generic, ParamSpec, TypeVar

from .options import ONE_YEAR_S, Options

if TYPE_CHECKING:
    from .registry import Registry

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

# What kind of call: a local durable call, a remote one (rpc / detached), a bare promise, a sleep.
RUN, RPC, DETACHED, PROMISE, SLEEP = "run", "rpc", "detached", "promise", "sleep"


@dataclass(frozen=True)
class Info:
    """Facts about the current execution (``ctx.info``)."""

    id: str
    root_id: str
    func: str
    attempt: int
    timeout: int  # absolute, ms since the epoch
    version: int = 0
    tags: dict[str, str] = field(default_factory=dict)
    idempotency_key: str | None = None


@dataclass(frozen=True)
class Call(Generic[T]):
    """A call a durable function yields. ``wait`` is True for run/rpc, False for begin_run/begin_rpc."""

    kind: str
    id: str
    func: Callable[..., Any] | str | None
    name: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    opts: Options
    wait: bool
    data: Any = None  # ctx.promise(data=...)
    secs: float = 0.0  # ctx.sleep(secs)

    def options(self, *, id: str | None = None, timeout: float | None = None, retry_policy: Any = None,
                tags: dict[str, str] | None = None, target: str | None = None, version: int | None = None,
                idempotency_key: str | Callable[[str], str] | None = None, durable: bool | None = None,
                non_retryable_exceptions: tuple[type[BaseException], ...] | None = None) -> Call[T]:
        """Change this call's options: ``yield ctx.run(f, 1).options(id="f-1", timeout=60)``."""
        opts = self.opts.merge(timeout=timeout, retry_policy=retry_policy, tags=tags, target=target,
                               version=version, idempotency_key=idempotency_key, durable=durable,
                               non_retryable_exceptions=non_retryable_exceptions)
        return replace(self, id=id if id is not None else self.id, opts=opts)


class Promise(Generic[T]):
    """A durable promise started with begin_run/begin_rpc/promise; ``yield`` it to wait for its value."""

    __slots__ = ("id",)

    def __init__(self, id: str) -> None:
        self.id = id

    def __repr__(self) -> str:
        return f"Promise(id={self.id!r})"


class Context:
    """The handle a durable function gets as its first argument (see the module docstring)."""

    def __init__(self, info: Info, registry: Registry, dependencies: dict[str, Any]) -> None:
        self._info = info
        self._registry = registry
        self._dependencies = dependencies
        self._counter = 0

    def __repr__(self) -> str:
        return f"Context(id={self._info.id!r})"

    @property
    def id(self) -> str:
        """This execution's promise id."""
        return self._info.id

    @property
    def info(self) -> Info:
        return self._info

    @property
    def random(self) -> Random:
        """Random numbers recorded as durable steps, so a replay sees the same ones."""
        return Random(self)

    @property
    def time(self) -> Time:
        """The clock, recorded as a durable step, so a replay sees the same time."""
        return Time(self)

    def get_dependency(self, name: str, default: Any = None) -> Any:
        """An object given to ``resonate.set_dependency(name, obj)`` (database clients and the like)."""
        return self._dependencies.get(name, default)

    def _next(self) -> str:
        self._counter += 1
        return f"{self._info.id}.{self._counter}"

    def _local(self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], wait: bool) -> Call[Any]:
        if not callable(func):
            raise TypeError(f"ctx.run takes a function, got {type(func).__name__}")
        target = getattr(func, "func", func)  # a registered Function runs its plain function
        name, version = self._registry.name_of(func)
        return Call(RUN, self._next(), target, name, args, kwargs, Options(version=version), wait)

    def _remote(self, kind: str, func: Callable[..., Any] | str, args: tuple[Any, ...], kwargs: dict[str, Any],
                wait: bool) -> Call[Any]:
        if isinstance(func, str):
            name, version = func, 0
        elif callable(func):
            name, version = self._registry.name_of(func, must_be_registered=True)
        else:
            raise TypeError(f"ctx.{kind} takes a registered function or its name, got {type(func).__name__}")
        return Call(kind, self._next(), None, name, args, kwargs, Options(version=version), wait)

    def run(self, func: Callable[Concatenate[Context, P], Generator[Any, Any, R] | R],
            *args: P.args, **kwargs: P.kwargs) -> Call[R]:
        """Run ``func`` here, durably, and wait for its result: ``v = yield ctx.run(f, x)``."""
        return self._local(func, args, kwargs, wait=True)

    def begin_run(self, func: Callable[Concatenate[Context, P], Generator[Any, Any, R] | R],
                  *args: P.args, **kwargs: P.kwargs) -> Call[Promise[R]]:
        """Start ``func`` here and get a promise at once: ``p = yield ctx.begin_run(f, x); v = yield p``."""
        return self._local(func, args, kwargs, wait=False)

    def rpc(self, func: Callable[..., Any] | str, *args: Any, **kwargs: Any) -> Call[Any]:
        """Have any worker of the target group (``.options(target=...)``) run ``func``; wait for it."""
        return self._remote(RPC, func, args, kwargs, wait=True)

    def begin_rpc(self, func: Callable[..., Any] | str, *args: Any, **kwargs: Any) -> Call[Promise[Any]]:
        """Like ``rpc`` but get a promise at once, to yield later."""
        return self._remote(RPC, func, args, kwargs, wait=False)

    def detached(self, func: Callable[..., Any] | str, *args: Any, **kwargs: Any) -> Call[Promise[Any]]:
        """Start ``func`` as a new top-level execution (its own call graph); get a promise at once."""
        return self._remote(DETACHED, func, args, kwargs, wait=False)

    def promise(self, *, id: str | None = None, timeout: float | None = None,
                idempotency_key: str | None = None, data: Any = None,
                tags: dict[str, str] | None = None) -> Call[Promise[Any]]:
        """A durable promise that only the outside world completes (human in the loop)::

            p = yield ctx.promise()
            answer = yield p      # resonate.promises.resolve(id=p.id, data='{"ok": true}')
        """
        opts = Options(timeout=timeout if timeout is not None else ONE_YEAR_S, tags=dict(tags or {}),
                       idempotency_key=idempotency_key)
        default = self._next()
        return Call(PROMISE, id or default, None, "promise", (), {}, opts, wait=False, data=data)

    def sleep(self, secs: float) -> Call[None]:
        """Sleep durably: ``yield ctx.sleep(3600)`` survives restarts of everything."""
        if not isinstance(secs, (int, float)) or isinstance(secs, bool) or secs < 0:
            raise TypeError(f"secs must be a non-negative number, got {secs!r}")
        return Call(SLEEP, self._next(), None, "sleep", (), {}, Options(), wait=True, secs=float(secs))


class Time:
    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    def time(self) -> Call[float]:
        return self._ctx.run(_now)

    def strftime(self, format: str) -> Call[str]:
        return self._ctx.run(_strftime, format)


class Random:
    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    def _rng(self) -> Any:
        return self._ctx.get_dependency("resonate:random", _random)

    def random(self) -> Call[float]:
        rng = self._rng()
        return self._ctx.run(lambda _ctx: rng.random())

    def randint(self, a: int, b: int) -> Call[int]:
        rng = self._rng()
        return self._ctx.run(lambda _ctx: rng.randint(a, b))

    def choice(self, seq: Sequence[T]) -> Call[T]:
        rng = self._rng()
        return self._ctx.run(lambda _ctx: rng.choice(seq))

    def uniform(self, a: float, b: float) -> Call[float]:
        rng = self._rng()
        return self._ctx.run(lambda _ctx: rng.uniform(a, b))


def _now(ctx: Context) -> float:
    return ctx.get_dependency("resonate:time", _time).time()


def _strftime(ctx: Context, format: str) -> str:
    return ctx.get_dependency("resonate:time", _time).strftime(format)
