"""The ``userscope audit`` command through ``main(argv)`` and once as a real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import userscope.audit
from userscope.audit import RULES, main

LEGACY = "registry = AgentRegistry()\n\n\ndef get_bridge():\n    global _b\n    _b = Bridge()\n"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A tiny legacy project; the working directory is its root."""
    write(tmp_path / "app" / "legacy.py", LEGACY)
    write(tmp_path / "app" / "clean.py", "app = FastAPI()\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["audit", *argv])
    out, err = capsys.readouterr()
    return code, out, err


# -- exit codes and text output -------------------------------------------------------


def test_findings_exit_1_with_text_lines_and_fix_hints(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "app")
    assert code == 1
    lines = out.splitlines()
    assert lines[0].startswith("app/legacy.py:1:1 US001 module-level `registry`")
    assert lines[1] == f"    fix: {RULES['US001'].hint}"
    assert lines[2].startswith("app/legacy.py:4:1 US002 `get_bridge()`")
    assert lines[3] == f"    fix: {RULES['US002'].hint}"
    assert lines[-1] == "userscope audit: 2 findings in 2 files"


def test_clean_tree_exits_0(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "app/clean.py")
    assert code == 0
    assert out == "userscope audit: no findings in 1 file\n"


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["audit"],
        ["audit", "app", "--format", "xml"],
        ["audit", "app", "--disable", "US999"],
        ["audit", "app", "--no-such-option"],
        ["lint", "app"],
    ],
)
def test_usage_errors_exit_2(
    project: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    assert main(argv) == 2
    assert "usage:" in capsys.readouterr().err


def test_missing_path_exits_2(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "app", "nowhere")
    assert code == 2
    assert out == ""
    assert "nowhere: path does not exist" in err


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "--help"]) == 0
    assert "--write-baseline" in capsys.readouterr().out


def test_disable_option(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "app", "--disable", "US001,US002")
    assert (code, out) == (0, "userscope audit: no findings in 2 files\n")


def test_output_file(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "app", "--format", "json", "-o", "report.json")
    assert (code, out) == (1, "")
    assert json.loads((project / "report.json").read_text())["summary"]["findings"] == 2


# -- json and sarif -------------------------------------------------------------------


def test_json_format(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "app", "--format", "json")
    assert code == 1
    document = json.loads(out)
    assert document["summary"] == {
        "files": 2,
        "lines": 7,
        "findings": 2,
        "suppressed_by_baseline": 0,
    }
    first = document["findings"][0]
    assert first == {
        "path": "app/legacy.py",
        "line": 1,
        "column": 1,
        "code": "US001",
        "rule": "module-level-stateful-instance",
        "level": "warning",
        "message": first["message"],
        "hint": RULES["US001"].hint,
        "symbol": "registry",
        "occurrence": 0,
    }


def test_sarif_2_1_0_structure(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "app", "--format", "sarif")
    assert code == 1
    log = json.loads(out)
    assert log["version"] == "2.1.0"
    assert log["$schema"].endswith("sarif-2.1.0.json")
    [sarif_run] = log["runs"]
    driver = sarif_run["tool"]["driver"]
    assert driver["name"] == "userscope-audit"
    assert isinstance(driver["version"], str)
    rule_ids = [rule["id"] for rule in driver["rules"]]
    assert rule_ids == list(RULES)
    for rule in driver["rules"]:
        assert rule["shortDescription"]["text"]
        assert rule["help"]["text"]
        assert rule["defaultConfiguration"]["level"] in {"error", "warning", "note"}
    results = sarif_run["results"]
    assert [r["ruleId"] for r in results] == ["US001", "US002"]
    for result in results:
        assert rule_ids[result["ruleIndex"]] == result["ruleId"]
        assert result["level"] in {"error", "warning", "note"}
        assert result["message"]["text"]
        [location] = result["locations"]
        physical = location["physicalLocation"]
        assert physical["artifactLocation"] == {"uri": "app/legacy.py", "uriBaseId": "%SRCROOT%"}
        assert set(physical["region"]) == {"startLine", "startColumn"}
        assert physical["region"]["startLine"] >= 1
        assert physical["region"]["startColumn"] >= 1
        assert list(result["partialFingerprints"]) == ["userscopeFinding/v1"]
    assert results[1]["locations"][0]["physicalLocation"]["region"]["startLine"] == 4


def test_sarif_of_clean_tree_has_rules_and_no_results(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "app/clean.py", "--format", "sarif")
    assert code == 0
    [sarif_run] = json.loads(out)["runs"]
    assert sarif_run["results"] == []
    assert len(sarif_run["tool"]["driver"]["rules"]) == len(RULES)


# -- baselines ------------------------------------------------------------------------


def test_baseline_round_trip_survives_line_shifts(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "app", "--write-baseline", "audit-baseline.json")
    assert (code, out) == (0, "")
    assert "wrote 2 finding(s)" in err
    document = json.loads((project / "audit-baseline.json").read_text())
    assert document["format"] == "userscope-audit-baseline"
    assert [(e["path"], e["code"], e["symbol"]) for e in document["findings"]] == [
        ("app/legacy.py", "US001", "registry"),
        ("app/legacy.py", "US002", "get_bridge"),
    ]

    code, out, _ = run(capsys, "app", "--baseline", "audit-baseline.json")
    assert (code, out) == (0, "userscope audit: no findings in 2 files (2 known in baseline)\n")

    legacy = project / "app" / "legacy.py"
    legacy.write_text('"""Docstring added later."""\n\nimport os\n\n' + LEGACY, encoding="utf-8")
    code, _, _ = run(capsys, "app", "--baseline", "audit-baseline.json")
    assert code == 0

    legacy.write_text(legacy.read_text() + "pool = ConnectionPool()\n", encoding="utf-8")
    code, out, _ = run(capsys, "app", "--baseline", "audit-baseline.json")
    assert code == 1
    assert out.splitlines()[0].startswith("app/legacy.py:11:1 US001 module-level `pool`")
    assert out.splitlines()[-1] == "userscope audit: 1 finding in 2 files (2 known in baseline)"


def test_baseline_paths_are_relative_to_the_baseline_file(
    project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert main(["audit", "app", "--write-baseline", "baseline.json"]) == 0
    monkeypatch.chdir(project / "app")
    code, _, _ = run(capsys, ".", "--baseline", "../baseline.json")
    assert code == 0


def test_second_occurrence_of_a_baselined_symbol_is_new(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["audit", "app", "--write-baseline", "b.json"]) == 0
    legacy = project / "app" / "legacy.py"
    legacy.write_text(LEGACY + "registry = AgentRegistry()\n", encoding="utf-8")
    code, out, _ = run(capsys, "app", "--baseline", "b.json")
    assert code == 1
    assert out.startswith("app/legacy.py:7:1 US001")


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "baseline file does not exist"),
        ("{not json", "baseline is not valid JSON"),
        ('{"findings": []}', "not a userscope audit baseline"),
        (
            '{"format": "userscope-audit-baseline", "version": 99, "findings": []}',
            "unsupported baseline version 99",
        ),
        ('{"format": "userscope-audit-baseline", "version": 1, "findings": [1]}', "malformed"),
    ],
)
def test_bad_baseline_exits_2(
    project: Path, capsys: pytest.CaptureFixture[str], content: str | None, problem: str
) -> None:
    if content is not None:
        (project / "b.json").write_text(content, encoding="utf-8")
    code, out, err = run(capsys, "app", "--baseline", "b.json")
    assert (code, out) == (2, "")
    assert problem in err
    assert "--write-baseline" in err or "regenerate" in err


# -- inline ignores --------------------------------------------------------------------


def test_inline_ignores_through_the_cli(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(
        project / "app" / "legacy.py",
        """\
        registry = AgentRegistry()  # userscope: ignore[US001]


        def get_bridge():  # userscope: ignore
            global _b
            _b = Bridge()
        """,
    )
    code, out, _ = run(capsys, "app")
    assert (code, out) == (0, "userscope audit: no findings in 2 files\n")


# -- configuration --------------------------------------------------------------------


def test_config_from_the_nearest_pyproject(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(
        project / "pyproject.toml",
        """\
        [project]
        name = "legacy"

        [tool.userscope.audit]
        patterns = ["Hub"]
        exclude = ["app/vendored/*"]
        deprecated-accessors = ["get_bridge"]
        """,
    )
    write(project / "app" / "hub.py", "hub = EventHub()\nget_bridge()\n")
    write(project / "app" / "vendored" / "x.py", "hub = OtherHub()\n")
    code, out, _ = run(capsys, "app", "--format", "json")
    assert code == 1
    found = [(f["path"], f["line"], f["code"]) for f in json.loads(out)["findings"]]
    # patterns replaced the defaults: AgentRegistry is no longer stateful
    assert found == [
        ("app/hub.py", 1, "US001"),
        ("app/hub.py", 2, "US007"),
        ("app/legacy.py", 4, "US002"),
    ]


def test_config_option_overrides_discovery(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(project / "pyproject.toml", '[tool.userscope.audit]\ndisable = ["US001", "US002"]\n')
    write(project / "ci" / "audit.toml", 'disable = ["US002"]\n')
    code, out, _ = run(capsys, "app", "--config", "ci/audit.toml")
    assert code == 1
    assert [line.split()[1] for line in out.splitlines()[:-1:2]] == ["US001"]


@pytest.mark.parametrize(
    ("toml", "problem"),
    [
        ("[tool.userscope.audit]\ncolour = 'red'\n", "unknown key `colour`"),
        ("[tool.userscope.audit]\npatterns = 'Registry'\n", "`patterns` must be a list"),
        ("[tool.userscope.audit]\ndisable = ['US999']\n", "unknown rule code(s) US999"),
        ("[tool.userscope.audit\n", "invalid TOML"),
        ("[tool.userscope.audit]\ndeprecated-accessors = 3\n", "`deprecated-accessors` must"),
    ],
)
def test_invalid_config_exits_2(
    project: Path, capsys: pytest.CaptureFixture[str], toml: str, problem: str
) -> None:
    (project / "bad.toml").write_text(toml, encoding="utf-8")
    code, out, err = run(capsys, "app", "--config", "bad.toml")
    assert (code, out) == (2, "")
    assert problem in err


def test_missing_config_file_exits_2(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "app", "--config", "missing.toml")
    assert code == 2
    assert "config file does not exist" in err


# -- files that do not parse ------------------------------------------------------------


def test_unparsable_file_is_reported_and_the_run_continues(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "app" / "broken.py").write_text("def broken(:\n    pass\n", encoding="utf-8")
    (project / "app" / "binary.py").write_bytes(b"\x00\xff\xfe garbage")
    code, out, _ = run(capsys, "app", "--format", "json")
    assert code == 1
    found = [(f["path"], f["code"]) for f in json.loads(out)["findings"]]
    assert ("app/broken.py", "US000") in found
    assert ("app/binary.py", "US000") in found
    assert ("app/legacy.py", "US001") in found


# -- a real process ---------------------------------------------------------------------


def test_python_dash_m_entry_point(project: Path) -> None:
    src = Path(userscope.audit.__file__).resolve().parents[2]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")]),
    }
    command = [sys.executable, "-m", "userscope.audit", "audit", "app", "--format", "json"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60, check=False)
    assert done.returncode == 1, done.stderr
    assert [f["code"] for f in json.loads(done.stdout)["findings"]] == ["US001", "US002"]
    usage = subprocess.run(
        [sys.executable, "-m", "userscope.audit"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert usage.returncode == 2
    assert "usage: userscope" in usage.stderr


def test_sarif_uris_for_files_outside_the_working_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    outside = write(tmp_path / "other dir" / "legacy.py", LEGACY)
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    code, out, _ = run(capsys, str(outside), "--format", "sarif")
    assert code == 1
    location = json.loads(out)["runs"][0]["results"][0]["locations"][0]
    assert location["physicalLocation"]["artifactLocation"] == {"uri": outside.as_uri()}


def test_relative_sarif_uris_are_percent_encoded(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(project / "my app" / "x.py", "registry = AgentRegistry()\n")
    code, out, _ = run(capsys, "my app", "--format", "sarif")
    assert code == 1
    location = json.loads(out)["runs"][0]["results"][0]["locations"][0]["physicalLocation"]
    assert location["artifactLocation"]["uri"] == "my%20app/x.py"


def test_directory_walk_skips_default_excludes_and_deduplicates(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(project / "app" / ".venv" / "lib" / "x.py", "registry = AgentRegistry()\n")
    write(project / "app" / "__pycache__" / "y.py", "registry = AgentRegistry()\n")
    write(project / "app" / "notes.txt", "registry = AgentRegistry()\n")
    code, out, _ = run(capsys, "app", "app/legacy.py", "--format", "json")
    assert code == 1
    document = json.loads(out)
    assert document["summary"]["files"] == 2
    assert {f["path"] for f in document["findings"]} == {"app/legacy.py"}


@pytest.mark.parametrize("option", ["--write-baseline", "--output"])
def test_unwritable_output_exits_2(
    project: Path, capsys: pytest.CaptureFixture[str], option: str
) -> None:
    code, out, err = run(capsys, "app", option, "no/such/dir/file.json")
    assert (code, out) == (2, "")
    assert "no/such/dir/file.json" in err
