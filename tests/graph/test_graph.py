"""`userscope.graph`: golden Mermaid and dot pictures, captive paths as validate() says,
and dot output that Graphviz renders."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from dependency_injector import containers, providers
from examples.agent_chat.app import Container as DemoContainer

import userscope as us
from graph.captive_app import Clean, Services

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("USERSCOPE_UPDATE_GOLDEN") == "1"
CASES = {"agent_chat": DemoContainer, "captive": Services}


@pytest.mark.parametrize("fmt", ["mermaid", "dot"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_golden_pictures(name: str, fmt: str) -> None:
    drawn = us.graph(CASES[name], format=fmt)  # type: ignore[arg-type]
    path = GOLDEN / f"{name}.{'mmd' if fmt == 'mermaid' else 'dot'}"
    if UPDATE:
        path.write_text(drawn, encoding="utf-8")
    assert drawn == path.read_text(encoding="utf-8"), (
        f"{path.name} changed; if on purpose, rerun with USERSCOPE_UPDATE_GOLDEN=1"
    )


def _validate_paths(container: object) -> list[str]:
    with pytest.raises(us.CaptiveDependencyError) as caught:
        us.validate(container)
    return list(caught.value.paths)


def test_captive_paths_carry_validates_text_and_their_edges_are_red() -> None:
    paths = _validate_paths(Services)
    assert paths == [
        (
            "Services.cache (Singleton) -> Services.agent_factory (Factory) -> "
            "Services.registry (UserScoped)"
        ),
        "Services.session (UserScoped) -> Services.bridge (ConnectionScoped)",
    ]
    mermaid = us.graph(Services)
    assert [line.strip()[len("%% captive: ") :] for line in mermaid.splitlines()
            if "%% captive:" in line] == paths  # fmt: skip
    nodes = dict(re.findall(r'^    (n\d+)\["([^<"]+)<br/>', mermaid, re.MULTILINE))
    edges = re.findall(r"^    (n\d+) (?:-->|-\. overridden by \.->) (n\d+)$", mermaid, re.MULTILINE)
    (red_line,) = [line for line in mermaid.splitlines() if "linkStyle" in line]
    red = {edges[int(i)] for i in red_line.split()[1].split(",")}
    named_red = {(nodes[a], nodes[b]) for a, b in red}
    assert named_red == {
        ("Services.cache", "Services.agent_factory"),
        ("Services.agent_factory", "Services.registry"),
        ("Services.session", "Services.bridge"),
    }
    dot = us.graph(Services, format="dot")
    for path in paths:
        assert f"captive: {path}\\l" in dot
    assert dot.count('color="#d62728", penwidth=2.5') == 3


def test_nodes_are_coloured_by_lifetime() -> None:
    mermaid = us.graph(Services)
    classes = {
        lifetime: set(members.split(","))
        for members, lifetime in re.findall(r"^    class (\S+) (\w+)$", mermaid, re.MULTILINE)
    }
    nodes = dict(re.findall(r'^    (n\d+)\["([^<"]+)<br/>', mermaid, re.MULTILINE))
    by_name = {lifetime: {nodes[n] for n in members} for lifetime, members in classes.items()}
    assert by_name == {
        "app": {"Services.cache"},
        "user": {"Services.context", "Services.registry", "Services.session"},
        "connection": {"Services.bridge"},
        "request": {"Services.handler"},
        "transient": {"Services.settings", "Services.agent_factory"},
    }


def test_a_clean_container_has_no_red_and_overrides_are_drawn() -> None:
    assert "linkStyle" not in us.graph(Clean)
    assert "captive" not in us.graph(Clean).split("\n", 2)[2]

    class WithOverride(containers.DeclarativeContainer):
        registry = us.UserScoped(dict)
        llm = providers.Singleton(dict)

    with WithOverride.llm.override(providers.Singleton(dict, registry=WithOverride.registry)):
        drawn = us.graph(WithOverride)
        assert "-. overridden by .->" in drawn
        (path,) = _validate_paths(WithOverride)
        assert path == "<inline Singleton(dict)> (Singleton) -> WithOverride.registry (UserScoped)"
        assert f"%% captive: {path}" in drawn
    assert "overridden by" not in us.graph(WithOverride)


def test_the_containers_self_provider_is_drawn_only_when_used() -> None:
    class Plain(containers.DeclarativeContainer):
        __self__ = providers.Self()
        registry = us.UserScoped(dict)

    assert "__self__" not in us.graph(Plain)

    class Uses(containers.DeclarativeContainer):
        __self__ = providers.Self()
        registry = us.UserScoped(dict, container=__self__)

    assert '["(the container)<br/><i>Self</i>"]' in us.graph(Uses)


def test_bad_format_and_bad_container_are_refused() -> None:
    with pytest.raises(us.GraphFormatError) as caught:
        us.graph(Clean, format="png")  # type: ignore[arg-type]
    assert caught.value.format == "png"
    assert caught.value.choices == ("mermaid", "dot")
    assert "dot -Tsvg" in str(caught.value)
    with pytest.raises(TypeError, match="container"):
        us.graph(object())


@pytest.mark.parametrize("name", sorted(CASES))
def test_graphviz_renders_the_dot_output(name: str, tmp_path: Path) -> None:
    dot = shutil.which("dot")
    assert dot is not None, "Graphviz is missing: bash scripts/bootstrap.sh --system installs it"
    source = tmp_path / f"{name}.dot"
    source.write_text(us.graph(CASES[name], format="dot"), encoding="utf-8")
    result = subprocess.run(
        [dot, "-Tsvg", str(source)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.lstrip().startswith("<?xml")
    assert "<svg" in result.stdout
    assert ("#d62728" in result.stdout) == (name == "captive")
    for attribute, provider in CASES[name].providers.items():
        if not isinstance(provider, providers.Self):  # the container itself: not drawn
            assert f"{CASES[name].__name__}.{attribute}" in result.stdout
