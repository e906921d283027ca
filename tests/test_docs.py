"""Docs that cannot drift: the generated results tables match the committed files, the site builds strictly, and the
README stays a front door."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
GENERATE = REPO / "docs" / "generate.py"
START = "<!-- generated: "


def run_generate(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(GENERATE), *args], capture_output=True, text=True, cwd=REPO, timeout=120)


def test_generated_blocks_are_up_to_date() -> None:
    result = run_generate("--check")
    assert result.returncode == 0, (f"stale docs: run `python docs/generate.py` after committing the results\n"
                                    f"{result.stdout}{result.stderr}")


def test_every_results_table_of_the_readme_is_generated() -> None:
    text = (REPO / "README.md").read_text()
    assert text.count(START) >= 2  # the headline table and its plot


def test_check_names_an_altered_block(tmp_path: Path) -> None:
    copy = tmp_path / "README.md"
    shutil.copy(REPO / "README.md", copy)
    assert run_generate("--check", "--root", str(REPO), str(copy)).returncode == 0  # an unaltered copy passes

    lines = copy.read_text().splitlines(keepends=True)
    row = next(i for i, line in enumerate(lines) if line.startswith("| macs 0.5 | amc"))
    start = max(i for i in range(row) if lines[i].startswith(START))  # the block the row is in
    lines[row] = lines[row].replace("| amc |", "| amc (edited by hand) |")
    copy.write_text("".join(lines))

    result = run_generate("--check", "--root", str(REPO), str(copy))
    assert result.returncode == 1
    assert f"README.md:{start + 1}: stale block `results/resnet20_fmnist_macs50/report.md table=1`" in result.stderr
    assert "amc (edited by hand)" in result.stderr  # the short diff shows the line
    assert copy.read_text() == "".join(lines)  # --check changes nothing

    assert run_generate("--root", str(REPO), str(copy)).returncode == 0  # rewriting restores the block
    assert copy.read_text() == (REPO / "README.md").read_text()


def test_check_reports_a_missing_source(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("# t\n\n<!-- generated: results/no_such_run/report.md table=1 -->\n<!-- end generated -->\n")
    result = run_generate("--check", "--root", str(REPO), str(page))
    assert result.returncode == 1
    assert "source missing: experiments/results/no_such_run/report.md" in result.stderr


def test_site_builds_strictly(tmp_path: Path) -> None:
    for module in ("mkdocs", "material"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed (pip install -e '.[docs]')")
    site = tmp_path / "site"
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(REPO / "mkdocs.yml"), "-d", str(site)],
        capture_output=True, text=True, cwd=REPO, timeout=300, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (site / "architecture" / "index.html").exists()


def test_readme_is_a_front_door() -> None:
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) <= 260, f"README.md has {len(lines)} lines: move the detail into docs/"
    head = [line for line in lines[:8] if line.strip()]
    assert head[0].startswith("# ")
    assert head[1] == "```bash"
    assert head[2].startswith("make run ")
    assert head[3].startswith("make test ")
