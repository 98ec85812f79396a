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

from .context import Call, Context, Info, Promise
from .errors import (
    EncodingError,
    NondeterminismError,
    NotRegistered,
    PromiseCanceled,
    PromiseRejected,
    PromiseTimedOut,
    RemoteError,
    ResonateError,
    Unreachable,
)
from .handle import Handle
from .options import Options
from .registry import Function
from .resonate import Resonate
from .retry import Constant, Exponential, Linear, Never, RetryPolicy

__version__ = "0.1.0"

__all__ = [
    "Call", "Constant", "Context", "EncodingError", "Exponential", "Function", "Handle", "Info", "Linear",
    "Never", "NondeterminismError", "NotRegistered", "Options", "Promise", "PromiseCanceled",
    "PromiseRejected", "PromiseTimedOut", "RemoteError", "Resonate", "ResonateError", "RetryPolicy",
    "Unreachable", "__version__",
]
