"""Baselines v2: snippet fingerprints, copies, stale entries, US000, version 1 files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from userscope.audit import Baseline, BaselineEntry, BaselineError, Finding, scan_source
from userscope.audit._baseline import _fingerprint_v1

SOURCE = "import os\n\nregistry = AgentRegistry()\n"


def test_fingerprint_ignores_line_but_not_the_source_line(tmp_path: Path) -> None:
    [old] = scan_source(SOURCE, path=str(tmp_path / "app.py"))
    [moved] = scan_source("\n\n" + SOURCE, path=str(tmp_path / "app.py"))
    [other] = scan_source(
        SOURCE.replace("AgentRegistry()", "AgentRegistry(x)"), path=str(tmp_path / "app.py")
    )
    baseline = Baseline.write(tmp_path / "b.json", [old])
    assert baseline.split([moved]) == ([], [moved])
    assert baseline.split([other]) == ([other], [])


def test_copy_with_other_neighbours_is_new_even_when_it_comes_first(tmp_path: Path) -> None:
    path = str(tmp_path / "app.py")
    baseline = Baseline.write(tmp_path / "b.json", scan_source(SOURCE, path=path))
    findings = scan_source("registry = AgentRegistry()\n" + SOURCE, path=path)
    new, known = baseline.split(findings)
    assert [f.line for f in new] == [1]
    assert [f.line for f in known] == [4]


def test_unparsable_findings_are_never_written_nor_matched(tmp_path: Path) -> None:
    [broken] = scan_source("def (:\n", path=str(tmp_path / "bad.py"))
    assert broken.code == "US000"
    baseline = Baseline.write(tmp_path / "b.json", [broken])
    assert baseline.entries == ()
    forged = Baseline(
        tmp_path / "b.json",
        (BaselineEntry("x", "bad.py", "US000", "", 1),),
    )
    assert forged.split([broken]) == ([broken], [])


def test_stale_entries_and_pruning(tmp_path: Path) -> None:
    path = tmp_path / "app.py"
    path.write_text(SOURCE)
    findings = scan_source(SOURCE, path=str(path))
    gone = Finding(str(tmp_path / "gone.py"), 1, 1, "US001", "m", "x", snippet="x = X()")
    baseline = Baseline.write(tmp_path / "b.json", [*findings, gone])
    assert len(baseline.entries) == 2
    # the registry was fixed: its entry and the deleted file's entry are stale
    stale = baseline.stale([], [str(path)])
    assert [(e.path, e.code) for e in stale] == [("app.py", "US001"), ("gone.py", "US001")]
    # a run that did not scan app.py does not call its entry stale
    assert [e.path for e in baseline.stale([], [])] == ["gone.py"]
    pruned = baseline.without(stale)
    assert pruned.entries == ()
    assert json.loads((tmp_path / "b.json").read_text())["findings"] == []


def test_version_1_baselines_are_still_matched(tmp_path: Path) -> None:
    [finding] = scan_source(SOURCE, path=str(tmp_path / "app.py"))
    document = {
        "format": "userscope-audit-baseline",
        "version": 1,
        "findings": [
            {
                "fingerprint": _fingerprint_v1(finding, tmp_path, 0),
                "path": "app.py",
                "code": "US001",
                "symbol": "registry",
                "occurrence": 0,
                "line": 3,
            }
        ],
    }
    (tmp_path / "b.json").write_text(json.dumps(document))
    baseline = Baseline.load(tmp_path / "b.json")
    assert baseline.version == 1
    assert baseline.split([finding]) == ([], [finding])


def test_unwritable_baseline_is_a_baseline_error(tmp_path: Path) -> None:
    with pytest.raises(BaselineError) as caught:
        Baseline.write(tmp_path / "missing" / "b.json", [])
    assert caught.value.path == tmp_path / "missing" / "b.json"
    assert "cannot write baseline" in caught.value.problem
