"""The project's documents stay true to the code: every operation of the protocol is in docs/api.md, and
README.md and docs/ link only to files that exist inside the repository (a clone has no ../shared)."""

from __future__ import annotations

import os
import re

import pytest
from resonate_daemon.protocol import OPS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def read(rel: str) -> str:
    with open(os.path.join(ROOT, rel)) as f:
        return f.read()


def documents() -> list[str]:
    docs = [os.path.join("docs", f) for f in sorted(os.listdir(os.path.join(ROOT, "docs"))) if f.endswith(".md")]
    return ["README.md", *docs]


@pytest.mark.parametrize("op", OPS, ids=lambda op: op.__name__)
def test_every_operation_is_in_the_api_page(op: type) -> None:
    route = op.ROUTE.replace("{id:path}", "{id}")  # type: ignore[attr-defined]
    page = read("docs/api.md")
    assert f"`{op.METHOD} {route}` | `{op.__name__}`" in page  # type: ignore[attr-defined]


def test_the_api_page_lists_nothing_that_is_gone() -> None:
    names = {op.__name__ for op in OPS}
    listed = set(re.findall(r"\| `[A-Z]+ [^`]+` \| `(\w+)` \|", read("docs/api.md")))
    assert listed == names


@pytest.mark.parametrize("doc", documents())
def test_links_stay_inside_the_repository(doc: str) -> None:
    text = read(doc)
    assert "../shared" not in text and "shared/" not in text, f"{doc} points outside the repository"
    base = os.path.dirname(os.path.join(ROOT, doc))
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
        if re.match(r"[a-z]+://", target):
            continue
        assert os.path.exists(os.path.normpath(os.path.join(base, target))), f"{doc}: broken link {target}"
