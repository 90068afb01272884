"""benchmarks/eval_audit.py end to end on the in-repo fixtures, and its skip path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "eval_audit.py"
FIXTURES = ROOT / "benchmarks" / "audit_labels" / "fixtures.toml"


def _run(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *argv],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )


def test_scores_the_fixtures_and_meets_the_accuracy_targets() -> None:
    # no --check: the speed target is measured on real corpora, never asserted in a test
    done = _run("--manifest", str(FIXTURES), "--repeat", "1")
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "recall 6/6 = 100.0%" in out
    assert "| error | 6 | 0 | 0 | 0 | 100% |" in out
    assert "| note | 0 | 3 | 0 | 0 | 100% |" in out
    assert "0 findings in 202 lines = 0.00 per 10k lines" in out
    assert "met  recall >= 90%" in out
    assert "met  no error on clean" in out
    assert "met  <= 0.2 findings per 10k lines on clean" in out
    assert ": MISSED" not in out


def test_a_missed_label_fails_the_check(tmp_path: Path) -> None:
    labels = FIXTURES.parent
    singletons = tmp_path / "singletons.txt"
    singletons.write_text(
        (labels / "fixtures-singletons.txt").read_text()
        + "agent_backend agent_backend/false_positives.py:21  a stub labelled by mistake\n"
    )
    manifest = tmp_path / "manifest.toml"
    manifest.write_text(
        FIXTURES.read_text()
        .replace('root = "../../tests/audit"', f'root = "{ROOT / "tests" / "audit"}"')
        .replace('"fixtures-singletons.txt"', f'"{singletons}"')
        .replace('"fixtures-findings.txt"', f'"{labels / "fixtures-findings.txt"}"')
    )
    done = _run("--manifest", str(manifest), "--repeat", "1", "--check")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "agent_backend/false_positives.py:21: MISSED" in done.stdout
    assert "recall 6/7" in done.stdout
    assert "MISSED recall >= 90%" in done.stdout


def test_skips_cleanly_without_corpora(tmp_path: Path) -> None:
    done = _run("--corpus-root", str(tmp_path / "none"))
    assert done.returncode == 0
    assert done.stdout.startswith("eval_audit: skipped: no corpus found under")
