"""resonate: durable functions for Python, in the programming model of the Resonate docs.

    from resonate import Resonate, Context
    resonate = Resonate.local()

    @resonate.register
    def factorial(ctx: Context, n: int) -> int:
        if n <= 1:
            return 1
        r = yield ctx.run(factorial, n - 1).options(id=f"factorial-{n-1}")
        return n * r

    print(factorial.run("factorial-5", n=5))   # 120
"""

from __future__ import annotations

from resonate_daemon import __version__

from .codec import register_type
from .context import Call, Context, Info, Promise
from .errors import (
    EncodingError,
    NondeterminismError,
    NonRetryable,
    NotRegistered,
    PromiseCanceled,
    PromiseNotFound,
    PromiseRejected,
    PromiseTimedOut,
    ResonateError,
    Unreachable,
)
from .handle import Handle
from .options import Options
from .registry import Registry
from .resonate import Function, Resonate
from .retry import Constant, Exponential, Linear, Never, RetryPolicy

__all__ = [
    "Call", "Constant", "Context", "EncodingError", "Exponential", "Function", "Handle", "Info", "Linear",
    "Never", "NonRetryable", "NondeterminismError", "NotRegistered", "Options", "Promise", "PromiseCanceled", "PromiseNotFound",
    "PromiseRejected", "PromiseTimedOut", "Registry", "Resonate", "ResonateError", "RetryPolicy", "Unreachable",
    "__version__", "register_type",
]
