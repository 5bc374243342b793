"""The documentation site builds in strict mode, and its generated pages match the code."""

from __future__ import annotations

import re

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_the_docs_site_builds_in_strict_mode(tmp_path):
    pytest.importorskip("mkdocs", reason='the docs extra: pip install -e ".[docs]" (the test extra brings it too)')
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(tmp_path / "site")],
                          cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ, "NO_MKDOCS_2_WARNING": "1"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (tmp_path / "site" / "reference" / "config" / "index.html").exists()
    api = (tmp_path / "site" / "reference" / "api" / "index.html").read_text()
    assert "mpifl.api.run" in api  # mkdocstrings rendered the docstrings


def test_the_generated_reference_pages_match_the_code(tmp_path):
    from mpifl import docs_reference

    docs_reference.main([str(tmp_path)])
    for page in ("cli.md", "metrics.md"):
        assert (tmp_path / page).read_text() == (ROOT / "docs" / "reference" / page).read_text(), (
            f"docs/reference/{page} is stale: python -m mpifl.docs_reference docs/reference")


def test_the_readme_is_short_and_links_only_to_pages_that_exist():
    import re

    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 200
    for target in re.findall(r"\]\(([^)#]+)\)", text):
        if not target.startswith("http"):
            assert (ROOT / target).exists(), target


RATIO = re.compile(r"(?<![\w.,])(\d+(?:\.\d+)?)\s?(?:×|x)(?!\w)(?!\s*[\d(])")  # 2.43×, 1.6x; not 8x8 or 1M x 32
RESULTS = ROOT / "docs" / "benchmarks" / "results"


def quoted_ratios(text: str) -> set[str]:
    return {m.group(1) for m in RATIO.finditer(text)}


def test_every_ratio_a_page_quotes_is_one_a_results_file_holds():
    """A figure is typed once, in a results file a benchmark writes and stamps; a page includes it or quotes
    what it holds, so no page keeps a ratio that no measurement on record gave."""
    held = set().union(*(quoted_ratios(path.read_text()) for path in RESULTS.glob("*.md")))
    pages = [ROOT / "README.md", *(p for p in (ROOT / "docs").rglob("*.md") if RESULTS not in p.parents)]
    stray = [f"{page.relative_to(ROOT)}:{n}: {ratio}x" for page in pages
             for n, line in enumerate(page.read_text().splitlines(), 1) for ratio in quoted_ratios(line) - held]
    assert stray == []


def test_every_results_file_is_stamped_with_machine_and_date():
    for path in RESULTS.glob("*.md"):
        last = path.read_text().rstrip().splitlines()[-1]
        assert last.startswith("_measured on ") and re.search(r"\d{4}-\d{2}-\d{2}", last), path.name


def test_the_ratio_finder_finds_ratios_and_not_sizes():
    assert quoted_ratios("2.43× NumPy, 1.6x Flower; 8x8 images, 1M x 32 rows, a 2x2 pool") == {"2.43", "1.6"}
