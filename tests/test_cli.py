"""The `userscope` command: --version, --help at each level, graph, audit dispatch, and
one set of exit codes (0 ok, 1 errors, 2 usage; audit adds 3 and 4 for lower severities)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import userscope as us
from userscope._cli import main

ROOT = Path(__file__).resolve().parents[1]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "--version") == (0, f"userscope {us.__version__}\n", "")


def test_help_at_the_top(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--help")
    assert code == 0
    assert out.startswith("usage: userscope [-h] [--version] COMMAND ...")
    assert "    graph     draw a container" in out
    assert "    audit     find module-level singletons" in out
    assert "exit status: 0 ok, 1 errors (audit findings of severity error, captive" in " ".join(
        out.split()
    )


def test_help_of_graph(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "graph", "--help")
    assert code == 0
    assert out.startswith("usage: userscope graph [-h] [--format {mermaid,dot}] [-o OUTPUT]")
    assert "MODULE:CONTAINER" in out
    assert "exit status: 0 drawn, 1 drawn but captive dependencies found, 2 usage error." in out


def test_help_of_audit_is_the_audit_commands_own(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "audit", "--help")
    assert code == 0
    assert out.startswith("usage: userscope audit [-h] [--format {text,json,sarif}]")
    assert "0 no findings   1 error   3 warning   4 note   2 usage or configuration error" in out


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys)
    assert code == 2
    assert "the following arguments are required: COMMAND" in err
    code, _, err = run(capsys, "frobnicate")
    assert code == 2
    assert "invalid choice: 'frobnicate'" in err
    assert run(capsys, "graph", "--format", "png", "graph.captive_app:Clean")[0] == 2
    code, _, err = run(capsys, "graph", "no_such_module_xyz:C")
    assert (code, err) == (
        2,
        (
            "userscope graph: error: cannot import 'no_such_module_xyz': "
            "No module named 'no_such_module_xyz'\n"
        ),
    )
    code, _, err = run(capsys, "graph", "graph.captive_app")
    assert code == 2
    assert "is not MODULE:CONTAINER" in err
    code, _, err = run(capsys, "graph", "graph.captive_app:Missing")
    assert (code, err) == (
        2,
        "userscope graph: error: 'graph.captive_app' has no attribute 'Missing'\n",
    )
    code, _, err = run(capsys, "graph", "graph.captive_app:us")
    assert (code, err) == (
        2,
        (
            "userscope graph: error: graph.captive_app:us is a module, not a "
            "dependency-injector container\n"
        ),
    )
    assert run(capsys, "audit", "no/such/path")[0] == 2


def test_graph_of_a_clean_container_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    from graph.captive_app import Clean

    code, out, err = run(capsys, "graph", "graph.captive_app:Clean")
    assert (code, out, err) == (0, us.graph(Clean), "")


def test_graph_with_captives_exits_1_and_names_them(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from graph.captive_app import Services

    target = tmp_path / "services.dot"
    code, out, err = run(capsys, "graph", "graph.captive_app:Services", "--format", "dot",
                         "-o", str(target))  # fmt: skip
    assert code == 1
    assert out == ""
    assert target.read_text(encoding="utf-8") == us.graph(Services, format="dot")
    with pytest.raises(us.CaptiveDependencyError) as caught:
        us.validate(Services)
    assert err.splitlines() == [
        f"userscope graph: captive dependency: {path}" for path in caught.value.paths
    ]


def test_audit_dispatch_keeps_its_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys, "audit", "--format", "json", str(ROOT / "examples/audit/legacy_chat.py")
    )
    assert code == 1
    assert '"code": "US001"' in out
    assert run(capsys, "audit", str(ROOT / "examples/audit/scoped_chat.py"))[0] == 0


def test_python_dash_m_userscope_works() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "userscope", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (result.returncode, result.stdout) == (0, f"userscope {us.__version__}\n")


def test_the_console_script_points_at_the_cli() -> None:
    from importlib.metadata import entry_points

    (script,) = [ep for ep in entry_points(group="console_scripts") if ep.name == "userscope"]
    assert script.value == "userscope._cli:main"
