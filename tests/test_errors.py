"""One error tree: every error a user can catch derives from ``resonate.ResonateError``, has a stable code
of its own, survives pickling (errors cross processes), and an API error comes back over the wire as the
class it left as."""

from __future__ import annotations

import inspect
import pickle

import pytest
from resonate_daemon import errors as kernel

import resonate
from resonate import errors

CLASSES = sorted((cls for _, cls in inspect.getmembers(kernel, inspect.isclass)
                  if issubclass(cls, kernel.ResonateError)), key=lambda c: c.code)


def sample(cls: type[kernel.ResonateError]) -> kernel.ResonateError:
    if cls is kernel.NondeterminismError:
        return cls("wf.2", "charge", "refund")
    return cls(f"a {cls.__name__} happened", {"id": "p-1"})


def test_the_sdk_and_the_daemon_share_one_tree() -> None:
    assert errors.ResonateError is kernel.ResonateError is resonate.ResonateError
    for cls in CLASSES:
        assert issubclass(cls, resonate.ResonateError)
        assert getattr(errors, cls.__name__) is cls, f"resonate.errors does not export {cls.__name__}"
    assert issubclass(resonate.PromiseNotFound, resonate.ResonateError)
    assert issubclass(resonate.EncodingError, TypeError)  # also what a plain `except TypeError` expects


def test_codes_are_unique_and_name_their_http_status() -> None:
    codes = [cls.code for cls in CLASSES]
    assert len(codes) == len(set(codes)), codes
    for cls in CLASSES:
        assert 10000 <= cls.code <= 69999 and cls.__doc__, cls
        if cls.code < 60000:
            assert sample(cls).status == cls.code // 100


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_every_error_pickles(cls: type[kernel.ResonateError]) -> None:
    exc = sample(cls)
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is cls and str(back) == str(exc) and back.args == exc.args and back.code == exc.code
    if cls is not kernel.NondeterminismError:
        assert back.details == {"id": "p-1"}


def test_an_unknown_wire_code_keeps_its_code_through_pickling() -> None:
    exc = kernel.from_json({"error": {"code": 42900, "message": "slow down"}}, 429)
    assert type(exc) is kernel.ResonateError and exc.code == 42900 and exc.status == 429
    back = pickle.loads(pickle.dumps(exc))
    assert back.code == 42900 and str(back) == "slow down"


@pytest.mark.parametrize("cls", [c for c in CLASSES if c.code in kernel.BY_CODE], ids=lambda c: c.__name__)
def test_api_errors_round_trip_through_their_wire_shape(cls: type[kernel.ResonateError]) -> None:
    exc = sample(cls)
    body = exc.to_json()
    assert body["error"]["code"] == cls.code and body["error"]["message"] == str(exc)
    back = kernel.from_json(body, exc.status)
    assert type(back) is cls and str(back) == str(exc) and back.details == exc.details


def test_bodies_that_are_not_the_error_shape_still_become_errors() -> None:
    for body, status in ((None, 502), ("<html>", 500), ({"error": "flat"}, 400), ({"error": {"code": "x"}}, 400)):
        exc = kernel.from_json(body, status)
        assert isinstance(exc, resonate.ResonateError) and exc.status == status


def test_local_mode_raises_the_same_classes() -> None:
    r = resonate.Resonate.local()
    try:
        with pytest.raises(resonate.ResonateError) as info:
            r.promises.get("missing")
        assert type(info.value) is errors.PromiseNotFound and info.value.code == 40400
        r.promises.create("p", ikey="k")
        with pytest.raises(errors.PromiseAlreadyExists):
            r.promises.create("p", ikey="other")
    finally:
        r.stop()
