"""The docs set: every relative link in the README and docs/ points at a file that exists, and the
pages the README promises are there."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), REPO / "bench" / "README.md"]
LINK = re.compile(r"\]\(([^)#\s]+)(#[^)]*)?\)")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(page: Path) -> None:
    for target, _anchor in LINK.findall(page.read_text()):
        if "://" in target:
            continue
        assert (page.parent / target).exists(), f"{page.name} links to missing {target}"


def test_the_operator_pages_exist_and_are_linked() -> None:
    readme = (REPO / "README.md").read_text()
    for name in ("configuration", "deployment", "admin", "building", "debian-ubuntu", "security",
                 "tls-and-http2", "queue-and-scheduler", "worker-mode"):
        assert (REPO / "docs" / f"{name}.md").is_file()
        assert f"(docs/{name}.md)" in readme, name
