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


def test_warnings_exit_3_with_summary_then_findings_and_fixes(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "app")
    assert code == 3  # the most severe finding is a warning
    lines = out.splitlines()
    assert lines[0] == "userscope audit: 2 findings in 2 files: 0 error, 2 warning, 0 note"
    assert lines[1].split() == ["warning", "US001", "module-level-stateful-instance", "1"]
    assert lines[2].split() == ["warning", "US002", "lazy-global-accessor", "1"]
    assert lines[3:5] == ["", "== warning (2) =="]
    assert lines[5].startswith("app/legacy.py:1:1 US001 module-level `registry`")
    assert lines[6].startswith("    fix: if `AgentRegistry` holds per-user or per-request data")
    assert "`registry = UserScoped(AgentRegistry)`" in lines[6]
    assert lines[7].startswith("app/legacy.py:4:1 US002 `get_bridge()`")
    assert "UserScoped(Bridge)" in lines[8]


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


def test_help_exits_0_and_shows_ignore_syntax_severities_and_exit_codes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["audit", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--write-baseline" in out
    assert "--min-severity {error,warning,note}" in out
    assert "# userscope: ignore[US001,US002]" in out
    assert "# userscope: ignore-file" in out
    assert "0 no findings   1 error   3 warning   4 note   2 usage" in out
    for code in RULES:
        assert code in out


_SEVERE = """\
class SecurityContext:
    def set_user(self, user, permissions):
        self._user = user
        self._permissions = permissions


security_context = SecurityContext()
pool = ConnectionPool()
"""


def test_exit_status_follows_the_most_severe_finding_and_min_severity_filters(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(project / "app" / "security.py", _SEVERE)
    code, out, _ = run(capsys, "app", "--format", "json")
    assert code == 1
    severities = [f["severity"] for f in json.loads(out)["findings"]]
    assert severities == ["error", "warning", "warning", "note"]
    code, out, _ = run(capsys, "app", "--format", "json", "--min-severity", "error")
    assert code == 1
    assert [f["severity"] for f in json.loads(out)["findings"]] == ["error"]
    (project / "app" / "security.py").write_text("pool = ConnectionPool()\n", encoding="utf-8")
    code, _, _ = run(capsys, "app", "--min-severity", "warning")
    assert code == 3
    code, _, _ = run(capsys, "app/security.py")
    assert code == 4
    code, out, _ = run(capsys, "app/security.py", "--min-severity", "warning")
    assert (code, out) == (0, "userscope audit: no findings in 1 file\n")


def test_text_json_and_sarif_report_the_same_findings_in_the_same_order(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(project / "app" / "security.py", _SEVERE)
    _, text, _ = run(capsys, "app")
    _, json_out, _ = run(capsys, "app", "--format", "json")
    _, sarif_out, _ = run(capsys, "app", "--format", "sarif")
    from_text = [
        (line.split(":")[0], int(line.split(":")[1]), line.split()[1])
        for line in text.splitlines()
        if line.startswith("app/")
    ]
    from_json = [(f["path"], f["line"], f["code"]) for f in json.loads(json_out)["findings"]]
    results = json.loads(sarif_out)["runs"][0]["results"]
    from_sarif = [
        (
            r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
            r["locations"][0]["physicalLocation"]["region"]["startLine"],
            r["ruleId"],
        )
        for r in results
    ]
    assert from_text == from_json == from_sarif
    assert len(from_json) == 4
    levels = [f["severity"] for f in json.loads(json_out)["findings"]]
    assert [r["level"] for r in results] == levels


def test_disable_option(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "app", "--disable", "US001,US002")
    assert (code, out) == (0, "userscope audit: no findings in 2 files\n")


def test_output_file(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "app", "--format", "json", "-o", "report.json")
    assert (code, out) == (3, "")
    assert json.loads((project / "report.json").read_text())["summary"]["findings"] == 2


# -- json and sarif -------------------------------------------------------------------


def test_json_format(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "app", "--format", "json")
    assert code == 3
    document = json.loads(out)
    assert document["summary"] == {
        "files": 2,
        "lines": 7,
        "findings": 2,
        "suppressed_by_baseline": 0,
        "by_severity": {"error": 0, "warning": 2, "note": 0},
        "by_rule": [
            {
                "severity": "warning",
                "code": "US001",
                "rule": "module-level-stateful-instance",
                "count": 1,
            },
            {"severity": "warning", "code": "US002", "rule": "lazy-global-accessor", "count": 1},
        ],
    }
    first = document["findings"][0]
    assert first == {
        "path": "app/legacy.py",
        "line": 1,
        "column": 1,
        "code": "US001",
        "rule": "module-level-stateful-instance",
        "severity": "warning",
        "level": "warning",
        "message": first["message"],
        "hint": first["hint"],
        "symbol": "registry",
        "occurrence": 0,
    }
    assert "`registry = UserScoped(AgentRegistry)`" in first["hint"]


def test_sarif_2_1_0_structure(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "app", "--format", "sarif")
    assert code == 3
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
        level = rule["defaultConfiguration"]["level"]
        expected = {"error": "8.0", "warning": "5.0", "note": "2.0"}[level]
        assert rule["properties"]["security-severity"] == expected
    results = sarif_run["results"]
    assert [r["ruleId"] for r in results] == ["US001", "US002"]
    for result in results:
        assert rule_ids[result["ruleIndex"]] == result["ruleId"]
        assert result["level"] == "warning"
        assert result["properties"]["security-severity"] == "5.0"
        assert "baselineState" not in result  # no baseline given
        assert result["message"]["text"]
        [location] = result["locations"]
        physical = location["physicalLocation"]
        assert physical["artifactLocation"] == {"uri": "app/legacy.py", "uriBaseId": "%SRCROOT%"}
        assert set(physical["region"]) == {"startLine", "startColumn"}
        assert physical["region"]["startLine"] >= 1
        assert physical["region"]["startColumn"] >= 1
        assert list(result["partialFingerprints"]) == ["userscopeFinding/v2"]
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
    assert code == 4  # a connection pool is infrastructure: a note
    lines = out.splitlines()
    assert lines[0] == (
        "userscope audit: 1 finding in 2 files: 0 error, 0 warning, 1 note (2 known in baseline)"
    )
    assert lines[4].startswith("app/legacy.py:11:1 US001 module-level `pool`")
    assert lines[5] == "    fix: keep `pool` process-wide; make sure it holds no per-user data"


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
    assert code == 3
    [reported] = [line for line in out.splitlines() if line.startswith("app/")]
    assert reported.startswith("app/legacy.py:7:1 US001")


def test_a_copy_added_above_a_baselined_finding_is_the_new_one(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    legacy = project / "app" / "legacy.py"
    legacy.write_text("import os\n\n" + LEGACY, encoding="utf-8")
    assert main(["audit", "app", "--write-baseline", "b.json"]) == 0
    # the same line pasted above the accepted one, in another neighbourhood
    legacy.write_text("registry = AgentRegistry()\nimport os\n\n" + LEGACY, encoding="utf-8")
    code, out, _ = run(capsys, "app", "--baseline", "b.json", "--format", "json")
    assert code == 3
    document = json.loads(out)
    assert [(f["line"], f["code"]) for f in document["findings"]] == [(1, "US001")]
    assert document["summary"]["suppressed_by_baseline"] == 2


def test_list_stale_and_prune_baseline(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "app", "--write-baseline", "b.json"]) == 0
    capsys.readouterr()
    legacy = project / "app" / "legacy.py"
    legacy.write_text("registry = AgentRegistry()\n", encoding="utf-8")  # accessor fixed
    code, out, err = run(capsys, "app", "--baseline", "b.json", "--list-stale")
    assert code == 0
    assert out == "app/legacy.py:4 US002 get_bridge (stale)\n"
    assert "1 stale baseline entry" in err
    # a partial run does not call entries of files it did not scan stale
    write(project / "other" / "x.py", "x = 1\n")
    code, out, _ = run(capsys, "other", "--baseline", "b.json", "--list-stale")
    assert (code, out) == (0, "")
    code, _, err = run(capsys, "app", "--baseline", "b.json", "--prune-baseline")
    assert code == 0
    assert "removed 1 stale entry" in err
    entries = json.loads((project / "b.json").read_text())["findings"]
    assert [(e["code"], e["symbol"]) for e in entries] == [("US001", "registry")]
    code, out, _ = run(capsys, "app", "--baseline", "b.json", "--list-stale")
    assert (code, out) == (0, "")


def test_stale_options_need_a_baseline(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for option in ("--list-stale", "--prune-baseline"):
        code, out, err = run(capsys, "app", option)
        assert (code, out) == (2, "")
        assert f"{option} needs --baseline FILE" in err


def test_unparsable_files_are_never_baselined(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "app" / "broken.py").write_text("def broken(:\n", encoding="utf-8")
    code, _, err = run(capsys, "app", "--write-baseline", "b.json")
    assert code == 0
    assert "wrote 2 finding(s)" in err
    assert "1 unparsable file(s) not recorded" in err
    entries = json.loads((project / "b.json").read_text())["findings"]
    assert "US000" not in {e["code"] for e in entries}
    code, out, _ = run(capsys, "app", "--baseline", "b.json", "--format", "json")
    assert code == 1  # still reported, and an error
    assert [f["code"] for f in json.loads(out)["findings"]] == ["US000"]


def test_sarif_marks_baselined_results_instead_of_dropping_them(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["audit", "app", "--write-baseline", "b.json"]) == 0
    legacy = project / "app" / "legacy.py"
    legacy.write_text(LEGACY + "pool = ConnectionPool()\n", encoding="utf-8")
    code, out, _ = run(capsys, "app", "--baseline", "b.json", "--format", "sarif")
    assert code == 4
    results = json.loads(out)["runs"][0]["results"]
    assert [(r["ruleId"], r["level"], r["baselineState"]) for r in results] == [
        ("US001", "warning", "unchanged"),
        ("US002", "warning", "unchanged"),
        ("US001", "note", "new"),
    ]


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


def test_file_level_ignore_comment(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(project / "app" / "legacy.py", "# userscope: ignore-file[US002]\n" + LEGACY)
    code, out, _ = run(capsys, "app", "--format", "json")
    assert code == 3
    assert [f["code"] for f in json.loads(out)["findings"]] == ["US001"]
    write(project / "app" / "legacy.py", LEGACY + "# userscope: ignore-file\n")
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
    assert code == 3
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
    assert code == 3
    assert [line.split()[1] for line in out.splitlines() if line.startswith("app/")] == ["US001"]


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
    assert done.returncode == 3, done.stderr
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
    assert code == 3
    location = json.loads(out)["runs"][0]["results"][0]["locations"][0]
    assert location["physicalLocation"]["artifactLocation"] == {"uri": outside.as_uri()}


def test_relative_sarif_uris_are_percent_encoded(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(project / "my app" / "x.py", "registry = AgentRegistry()\n")
    code, out, _ = run(capsys, "my app", "--format", "sarif")
    assert code == 3
    location = json.loads(out)["runs"][0]["results"][0]["locations"][0]["physicalLocation"]
    assert location["artifactLocation"]["uri"] == "my%20app/x.py"


def test_directory_walk_skips_default_excludes_and_deduplicates(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(project / "app" / ".venv" / "lib" / "x.py", "registry = AgentRegistry()\n")
    write(project / "app" / "__pycache__" / "y.py", "registry = AgentRegistry()\n")
    write(project / "app" / "notes.txt", "registry = AgentRegistry()\n")
    code, out, _ = run(capsys, "app", "app/legacy.py", "--format", "json")
    assert code == 3
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
