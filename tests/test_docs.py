"""The documentation site builds with `mkdocs build --strict` (a broken link or a page missing
from the navigation fails it), and the README and BENCHMARKS stay the short front doors the
details in docs/ hang from."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_the_site_builds_strictly(tmp_path):
    pytest.importorskip("mkdocs")
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "site" / "architecture" / "index.html").is_file()


def test_readme_and_benchmarks_stay_short_and_link_to_existing_pages():
    readme, benchmarks = (ROOT / "README.md").read_text(), (ROOT / "BENCHMARKS.md").read_text()
    assert len(readme.splitlines()) <= 250 and len(benchmarks.splitlines()) <= 300
    for target in re.findall(r"\]\((docs/[^)#]+)", readme):
        assert (ROOT / target).is_file(), target
    for command in re.findall(r"python -m (benchmarks\.[a-z_0-9]+)", readme + benchmarks):
        assert (ROOT / (command.replace(".", "/") + ".py")).is_file(), command
