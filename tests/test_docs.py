"""The documentation site builds in strict mode, and its generated pages match the code."""

from __future__ import annotations

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
