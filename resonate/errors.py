"""The SDK's exception tree. Each class says when it is raised; all pickle (they cross processes)."""

from __future__ import annotations

from typing import Any


class ResonateError(Exception):
    """Base of every error the SDK raises on purpose."""

    code = "resonate"

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.__class__, self.args)


class NotRegistered(ResonateError):
    """A function name (or version) was invoked that no ``@resonate.register`` made known here."""

    code = "not_registered"


class NondeterminismError(ResonateError):
    """A replay called a different function at a position where the recorded history has another."""

    code = "nondeterminism"

    def __init__(self, position: str, recorded: str, called: str) -> None:
        super().__init__(position, recorded, called)
        self.position, self.recorded, self.called = position, recorded, called

    def __str__(self) -> str:
        return (f"nondeterministic replay at {self.position!r}: the history records a call of "
                f"{self.recorded!r} there, but the code now calls {self.called!r}")


class PromiseTimedOut(ResonateError):
    """A promise this execution awaited passed its timeout before anyone completed it."""

    code = "timed_out"


class PromiseCanceled(ResonateError):
    """A promise this execution awaited was canceled."""

    code = "canceled"


class PromiseRejected(ResonateError):
    """A promise was rejected with a value that is not an exception this process can rebuild."""

    code = "rejected"


class EncodingError(ResonateError, TypeError):
    """A value, argument or result cannot be stored (it is neither JSON nor picklable)."""

    code = "encoding"


class RemoteError(ResonateError):
    """The daemon answered a request with an error (``status`` and the API's ``api_code``)."""

    code = "remote"

    def __init__(self, message: str, status: int = 0, api_code: int = 0) -> None:
        super().__init__(message, status, api_code)
        self.status, self.api_code = status, api_code

    def __str__(self) -> str:
        return str(self.args[0])


class Unreachable(ResonateError):
    """No daemon answers at the configured socket or URL."""

    code = "unreachable"
