"""The `userscope.mypy` plugin's diagnostics, pinned word for word (runs `mypy.api`).

The project's configuration enables the plugin (``plugins = [..., "userscope.mypy"]``);
the same samples pass without it, which is the hole it closes.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from mypy import api

ROOT = Path(__file__).resolve().parents[2]

HEADER = """\
from collections.abc import AsyncIterator
from typing import Annotated

from dependency_injector import containers
from dependency_injector.wiring import Provide, inject
from fastapi import Depends

import userscope as us
from userscope.adapters.fastapi import Inject


class Agent: ...


class Bridge: ...


async def open_agent() -> AsyncIterator[Agent]:
    yield Agent()


class Container(containers.DeclarativeContainer):
    agent = us.RequestScoped(Agent)
    async_agent = us.RequestScoped(open_agent)
"""
FIRST = HEADER.count("\n") + 1  # line of the body's first line


@pytest.fixture(scope="module")
def caches(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """mypy caches shared by this module's runs (one per configuration): fast re-runs."""
    return tmp_path_factory.mktemp("mypy-caches")


def mypy(tmp_path: Path, body: str, caches: Path, *, plugin: bool = True) -> tuple[list[str], int]:
    """Type-check HEADER + body with the project's strict config; return error lines."""
    source = tmp_path / "sample.py"
    source.write_text(HEADER + body)
    config = (ROOT / "pyproject.toml").read_text()
    if not plugin:
        config = config.replace(', "userscope.mypy"', "")
        assert "userscope.mypy" not in config
    (tmp_path / "pyproject.toml").write_text(config)
    stdout, stderr, status = api.run(
        [
            "--config-file",
            str(tmp_path / "pyproject.toml"),
            "--cache-dir",
            str(caches / ("plugin" if plugin else "plain")),
            "--no-error-summary",
            "--no-pretty",
            str(source),
        ]
    )
    assert stderr == ""
    lines = [line.replace(str(source), "sample.py") for line in stdout.splitlines()]
    return lines, status


ANNOTATED = """\
async def endpoint(ok: Annotated[Agent, Inject(Container.agent)],
                   bridge: Annotated[Bridge, Inject(Container.agent)]) -> None:
    pass
"""

PROVIDE = """\
@inject
def wired(ok: Agent = Provide[Container.agent],
          bridge: Bridge = Provide[Container.agent]) -> None:
    pass
"""


def test_wrong_annotated_inject_is_an_error(tmp_path: Path, caches: Path) -> None:
    lines, status = mypy(tmp_path, ANNOTATED, caches)
    assert status == 1
    assert lines == [
        (
            f"sample.py:{FIRST + 1}: error: Incompatible types in assignment (expression has type "
            '"Agent", variable has type "Bridge")  [assignment]'
        )
    ]


def test_wrong_provide_default_is_an_error(tmp_path: Path, caches: Path) -> None:
    lines, status = mypy(tmp_path, PROVIDE, caches)
    assert status == 1
    assert lines == [
        (
            f'sample.py:{FIRST + 2}: error: Incompatible default for parameter "bridge" (default '
            'has type "Agent", parameter has type "Bridge")  [assignment]'
        )
    ]


def test_without_the_plugin_both_pass(tmp_path: Path, caches: Path) -> None:
    assert mypy(tmp_path, ANNOTATED + PROVIDE, caches, plugin=False) == ([], 0)


def test_depends_provide_keeps_working_and_is_checked(tmp_path: Path, caches: Path) -> None:
    body = """\
@inject
async def endpoint(ok: Agent = Depends(Provide[Container.agent]),
                   bridge: Bridge = Depends(Provide[Container.agent])) -> None:
    pass
"""
    lines, _ = mypy(tmp_path, body, caches)
    assert lines == [
        (
            f'sample.py:{FIRST + 2}: error: Incompatible default for parameter "bridge" (default '
            'has type "Agent", parameter has type "Bridge")  [assignment]'
        )
    ]


def test_calling_an_async_provider_gives_an_awaitable(tmp_path: Path, caches: Path) -> None:
    body = """\
async def use(container: Container) -> None:
    agent: Agent = container.async_agent()
    awaited: Agent = await container.async_agent.async_()
"""
    lines, _ = mypy(tmp_path, body, caches)
    assert lines == [
        (
            f"sample.py:{FIRST + 1}: error: Incompatible types in assignment (expression has type "
            '"Awaitable[Agent]", variable has type "Agent")  [assignment]'
        ),
        f'sample.py:{FIRST + 1}: note: Maybe you forgot to use "await"?',
    ]
