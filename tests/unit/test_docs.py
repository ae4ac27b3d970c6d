"""The docs set: every relative link in the README and docs/ points at a file that exists, and the
pages the README promises are there."""

from __future__ import annotations

import re
import shutil
import subprocess
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
    for name in ("architecture", "configuration", "deployment", "admin", "building", "debian-ubuntu",
                 "security", "tls-and-http2", "queue-and-scheduler", "worker-mode", "multi-host"):
        assert (REPO / "docs" / f"{name}.md").is_file()
        assert f"(docs/{name}.md)" in readme, name


DIAGRAMS = sorted((REPO / "docs" / "architecture").glob("*.dot"))


@pytest.mark.parametrize("source", DIAGRAMS, ids=lambda p: p.name)
def test_diagrams_are_rendered_from_their_source(source: Path, tmp_path: Path) -> None:
    """docs/architecture/render writes each .dot's SVG beside it; an edit without a render fails."""
    if shutil.which("dot") is None:
        pytest.skip("Graphviz `dot` is not installed (./quickstart test installs it)")
    rendered = tmp_path / "out.svg"
    subprocess.run(["dot", "-Tsvg", str(source), "-o", str(rendered)], check=True)
    committed = source.with_suffix(".svg")
    assert committed.is_file(), f"run docs/architecture/render: {committed.name} is missing"
    stale = f"run docs/architecture/render: {committed.name} is stale"
    assert committed.read_text() == rendered.read_text(), stale


def test_the_architecture_page_embeds_its_diagrams() -> None:
    page = (REPO / "docs" / "architecture.md").read_text()
    for source in DIAGRAMS:
        assert f"(architecture/{source.with_suffix('.svg').name})" in page
