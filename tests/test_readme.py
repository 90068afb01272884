"""The README's first hour: its python blocks run as copied, its set-up is two commands."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def blocks(language: str, text: str = README) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, re.DOTALL)


def section(title: str) -> str:
    found = re.search(
        rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", README, re.DOTALL | re.MULTILINE
    )
    assert found, f"README lost its section {title!r}"
    return found.group(1)


@pytest.mark.parametrize("index", range(len(blocks("python"))))
def test_python_blocks_run_as_copied(index: int, tmp_path: Path) -> None:
    """Each block runs alone in a fresh interpreter, outside the repository."""
    script = tmp_path / "snippet.py"
    script.write_text(blocks("python")[index])
    done = subprocess.run(
        [sys.executable, "-W", "error", str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""


def test_at_a_glance_shows_isolation_cleanup_and_the_loud_failure(tmp_path: Path) -> None:
    (at_a_glance,) = blocks("python", section("At a glance"))
    script = tmp_path / "glance.py"
    script.write_text(at_a_glance)
    out = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=60
    ).stdout
    assert out == "Container.agent needs a REQUEST scope\n"


def test_set_up_is_exactly_the_demo_and_the_test_suite() -> None:
    commands = [line for block in blocks("bash", section("Set up on a fresh machine"))
                for line in block.splitlines() if line.strip()]  # fmt: skip
    assert commands == ["bash scripts/demo", "bash scripts/check"]
    for command in commands:
        assert (ROOT / command.split()[1]).is_file()


def test_install_lines_and_python_version_match_the_package() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["requires-python"] == ">=3.11"
    assert "**Python 3.11+**" in README
    install = "\n".join(blocks("bash"))
    assert 'pip install "userscope[fastapi]" "uvicorn[standard]"' in install
    extras = set(re.findall(r"userscope\[(\w+)\]", install))
    assert extras <= set(project["optional-dependencies"])


def test_the_docs_home_shows_the_same_example() -> None:
    """docs/index.md repeats the README's example: one text, run once above."""
    (at_a_glance,) = blocks("python", section("At a glance"))
    home = (ROOT / "docs" / "index.md").read_text()
    assert blocks("python", home) == [at_a_glance]
