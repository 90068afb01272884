"""mypy's own words on wrong overrides, pinned (runs mypy through `mypy.api`)."""

from __future__ import annotations

from pathlib import Path

from mypy import api

ROOT = Path(__file__).resolve().parents[2]

HEADER = """\
from collections.abc import Iterator

from dependency_injector import containers

import userscope as us
from userscope.testing import override


class Agent: ...


class NotAnAgent: ...


class Container(containers.DeclarativeContainer):
    agent = us.RequestScoped(Agent)
"""


def mypy(tmp_path: Path, body: str) -> tuple[list[str], int]:
    """Type-check HEADER + body with the project's strict config; return error lines."""
    source = tmp_path / "sample.py"
    source.write_text(HEADER + body)
    stdout, stderr, status = api.run(
        [
            "--config-file",
            str(ROOT / "pyproject.toml"),
            "--cache-dir",
            str(ROOT / ".mypy_cache"),
            "--no-error-summary",
            "--no-pretty",
            str(source),
        ]
    )
    assert stderr == ""
    lines = [line.replace(str(source), "sample.py") for line in stdout.splitlines()]
    return lines, status


def test_wrong_override_value_names_both_types(tmp_path: Path) -> None:
    lines, status = mypy(tmp_path, "\noverride(Container.agent, NotAnAgent())\n")
    assert status == 1
    assert lines == [
        (
            'sample.py:18: error: Argument 2 to "override" has incompatible type "NotAnAgent"; '
            'expected "Agent | Callable[[_AnyInjection], Agent]"  [arg-type]'
        )
    ]


def test_wrong_override_factory_names_both_types(tmp_path: Path) -> None:
    lines, status = mypy(tmp_path, "\noverride(Container().agent, NotAnAgent, scoped=True)\n")
    assert status == 1
    assert lines == [
        (
            'sample.py:18: error: Argument 2 to "override" has incompatible type '
            '"type[NotAnAgent]"; expected "Callable[[], Agent]"  [arg-type]'
        )
    ]


def test_plain_dependency_injector_override_lets_it_through(tmp_path: Path) -> None:
    lines, status = mypy(tmp_path, "\nContainer.agent.override(NotAnAgent())\n")
    assert (lines, status) == ([], 0)


def test_generator_factory_annotated_iterator_resolves_to_its_item(tmp_path: Path) -> None:
    body = """
from typing import assert_type


def open_agent() -> Iterator[Agent]:
    yield Agent()


class WithGenerator(containers.DeclarativeContainer):
    agent = us.RequestScoped(open_agent)


assert_type(WithGenerator.agent(), Agent)
"""
    lines, status = mypy(tmp_path, body)
    assert (lines, status) == ([], 0)
