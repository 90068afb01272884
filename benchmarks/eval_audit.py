"""Score ``userscope audit`` on real code: recall, precision per severity, noise, speed.

Reads a manifest (default ``benchmarks/audit_labels/corpora.toml``) naming corpora:
real multi-user agent/chat backends whose per-user singletons were labelled by hand
(``singletons.txt``), and well-kept libraries where every finding is noise. Scans each
one with ``scan_paths`` and prints

* recall: labelled singletons with a finding on their line (any rule, any severity);
* per severity, the hand verdicts of the findings (``findings.txt``): an ``error``
  should be a real isolation risk, a ``warning``/``note`` process-wide state, never
  a false positive;
* findings (and errors) per 10,000 lines on the clean libraries;
* lines per second (best of ``--repeat`` runs per corpus) and peak memory.

The corpora's code is never committed. Bring it here once with

    .venv/bin/python benchmarks/eval_audit.py --prepare /work/.mirror

(exports each ``<owner>+<name>/repo`` bare mirror at the pinned commit, Python files
only, into ``--corpus-root``, default ``$USERSCOPE_AUDIT_CORPUS`` or /tmp/corpus). When
no corpus is present the script says so and exits 0 (CI has none); ``--manifest
benchmarks/audit_labels/fixtures.toml`` scores the in-repo fixtures instead.

    .venv/bin/python benchmarks/eval_audit.py                 # score the corpora
    .venv/bin/python benchmarks/eval_audit.py --check         # exit 1 if a target is missed
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from userscope.audit import AuditConfig, Finding, scan_paths

HERE = Path(__file__).resolve().parent
DEFAULT_MANIFEST = HERE / "audit_labels" / "corpora.toml"
MARKER = ".userscope-corpus-commit"
VERDICTS = ("risk", "shared", "fp")
TARGET_RECALL = 0.90
TARGET_CLEAN_PER_10K = 0.2
TARGET_LINES_PER_SECOND = 20_000


@dataclass
class Corpus:
    name: str
    kind: str  # "backend", "clean" (package sources) or "clean-repo" (whole repository)
    paths: list[str]
    repo: str = ""
    commit: str = ""
    root: Path = Path()
    findings: list[Finding] = field(default_factory=list)
    lines: int = 0
    files: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0

    def relative(self, finding: Finding) -> str:
        path = Path(finding.path)
        if not path.is_absolute():
            path = Path.cwd() / path
        return path.resolve().relative_to(self.root.resolve()).as_posix()


def load_manifest(path: Path, corpus_root: Path) -> tuple[list[Corpus], Path, Path]:
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    base = path.parent
    root = (base / data["root"]).resolve() if "root" in data else corpus_root
    corpora = [
        Corpus(
            name=entry["name"],
            kind=entry["kind"],
            paths=list(entry["paths"]),
            repo=entry.get("repo", ""),
            commit=entry.get("commit", ""),
            root=root / entry.get("dir", entry["name"]),
        )
        for entry in data["corpus"]
    ]
    return corpora, base / data["singletons"], base / data["findings"]


def read_labels(path: Path, fields: int) -> list[list[str]]:
    rows = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            rows.append(line.split(maxsplit=fields))
    return rows


def prepare(corpora: list[Corpus], mirrors: Path) -> int:
    """Export every corpus from its bare mirror at the pinned commit (Python files only)."""
    failed = 0
    for corpus in corpora:
        if not corpus.repo:
            continue
        git_dir = mirrors / corpus.repo.replace("/", "+") / "repo"
        if not git_dir.is_dir():
            print(f"{corpus.name}: no mirror at {git_dir}; fetch github:{corpus.repo} first")
            failed += 1
            continue
        corpus.root.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", f"--git-dir={git_dir}", "archive", corpus.commit, "--", "*.py"],
            capture_output=True,
            check=False,
        )
        if archive.returncode != 0:
            print(f"{corpus.name}: git archive failed: {archive.stderr.decode().strip()}")
            failed += 1
            continue
        subprocess.run(["tar", "-x", "-C", str(corpus.root)], input=archive.stdout, check=True)
        (corpus.root / MARKER).write_text(corpus.commit + "\n", encoding="utf-8")
        print(f"{corpus.name}: exported {corpus.commit[:12]} to {corpus.root}")
    return 1 if failed else 0


def scan(corpus: Corpus, repeat: int) -> None:
    targets = [corpus.root / p for p in corpus.paths]
    best = best_cpu = float("inf")
    config = AuditConfig()
    for _ in range(repeat):
        started, started_cpu = time.perf_counter(), time.process_time()
        result = scan_paths(targets, config)
        best = min(best, time.perf_counter() - started)
        best_cpu = min(best_cpu, time.process_time() - started_cpu)
    corpus.findings = list(result.findings)
    corpus.lines = result.lines_scanned
    corpus.files = result.files_scanned
    corpus.seconds = best
    corpus.cpu_seconds = best_cpu


@dataclass
class Scores:
    recall: float
    precision: dict[str, float]
    noise: dict[str, tuple[float, int]]  # kind -> (findings per 10k lines, errors)
    lines_per_second: float


def evaluate(corpora: list[Corpus], singletons: Path, verdicts: Path, *, show: bool) -> Scores:
    backends = [c for c in corpora if c.kind == "backend"]
    by_name = {c.name: c for c in corpora}
    located: dict[tuple[str, str, int], list[Finding]] = {}
    for corpus in corpora:
        for finding in corpus.findings:
            key = (corpus.name, corpus.relative(finding), finding.line)
            located.setdefault(key, []).append(finding)

    labelled = [row for row in read_labels(singletons, 2) if row[0] in by_name]
    found = 0
    print("\n## recall: hand-labelled per-user singletons")
    for name, where, *reason in labelled:
        path, _, line = where.rpartition(":")
        hits = located.get((name, path, int(line)), [])
        found += bool(hits)
        if show or not hits:
            shown = ", ".join(f"{f.code}/{f.severity}" for f in hits) or "MISSED"
            print(f"  {name} {where}: {shown}  ({' '.join(reason)})")
    recall = found / len(labelled) if labelled else float("nan")
    print(f"recall {found}/{len(labelled)} = {recall:.1%}")

    verdict_of: dict[tuple[str, str, int, str], str] = {}
    for name, where, code, verdict, *_ in read_labels(verdicts, 4):
        path, _, line = where.rpartition(":")
        verdict_of[(name, path, int(line), code)] = verdict
    table: dict[str, dict[str, int]] = {
        s: dict.fromkeys((*VERDICTS, "unlabelled"), 0) for s in ("error", "warning", "note")
    }
    unparsable = 0
    for corpus in backends:
        for finding in corpus.findings:
            if finding.code == "US000":
                unparsable += 1
                continue
            key = (corpus.name, corpus.relative(finding), finding.line, finding.code)
            verdict = verdict_of.get(key, "unlabelled")
            table[finding.severity][verdict] += 1
            if verdict == "unlabelled":
                print(f"  unlabelled: {corpus.name} {key[1]}:{key[2]} {key[3]} {finding.severity}")
    print("\n## findings on the backends by severity and hand verdict")
    print("| severity | risk | shared by design | false positive | unlabelled | precision |")
    print("|---|---|---|---|---|---|")
    precision: dict[str, float] = {}
    for severity, counts in table.items():
        judged = counts["risk"] + counts["shared"] + counts["fp"]
        # an error must be a real risk; a warning or note must at least be process-wide state
        good = counts["risk"] if severity == "error" else counts["risk"] + counts["shared"]
        precision[severity] = good / judged if judged else float("nan")
        print(
            f"| {severity} | {counts['risk']} | {counts['shared']} | {counts['fp']} | "
            f"{counts['unlabelled']} | {precision[severity]:.0%} |"
        )
    print(f"(plus {unparsable} US000: files this Python cannot parse, not labelled)")

    noise: dict[str, tuple[float, int]] = {}
    for kind, title in (("clean", "package sources"), ("clean-repo", "whole repositories")):
        cleans = [c for c in corpora if c.kind == kind]
        if not cleans:
            continue
        print(f"\n## clean libraries: {title}")
        clean_lines = sum(c.lines for c in cleans)
        clean_findings = [f for c in cleans for f in c.findings]
        errors = sum(1 for f in clean_findings if f.severity == "error")
        for corpus in cleans:
            print(f"  {corpus.name}: {len(corpus.findings)} findings in {corpus.lines} lines")
            for finding in corpus.findings:
                where = f"{corpus.relative(finding)}:{finding.line}"
                print(f"    {where} {finding.code} {finding.severity}")
        per_10k = len(clean_findings) / clean_lines * 10_000 if clean_lines else float("nan")
        print(
            f"{len(clean_findings)} findings in {clean_lines} lines = {per_10k:.2f} per 10k lines"
        )
        print(f"errors {errors}")
        noise[kind] = (per_10k, errors)

    print("\n## speed (best of the runs, per corpus; wall clock, and CPU time of this process)")
    total_lines = sum(c.lines for c in corpora)
    total_seconds = sum(c.seconds for c in corpora)
    total_cpu = sum(c.cpu_seconds for c in corpora)
    for corpus in corpora:
        rate = corpus.lines / corpus.seconds if corpus.seconds else 0.0
        cpu_rate = corpus.lines / corpus.cpu_seconds if corpus.cpu_seconds else 0.0
        print(
            f"  {corpus.name:<15} {corpus.files:>5} files {corpus.lines:>7} lines "
            f"{corpus.seconds:6.2f} s {rate:>9,.0f} lines/s  (CPU {cpu_rate:>9,.0f} lines/s)"
        )
    rate = total_lines / total_seconds if total_seconds else float("nan")
    cpu_rate = total_lines / total_cpu if total_cpu else float("nan")
    print(f"CPU: {total_lines} lines in {total_cpu:.2f} s = {cpu_rate:,.0f} lines/s")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"total {total_lines} lines in {total_seconds:.2f} s = {rate:,.0f} lines/s")
    print(f"peak RSS of this process {peak:.0f} MB")
    return Scores(recall, precision, noise, rate)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST)
    parser.add_argument(
        "--corpus-root",
        type=Path,
        default=Path(os.environ.get("USERSCOPE_AUDIT_CORPUS", "/tmp/corpus")),
        help="directory holding one exported tree per corpus",
    )
    parser.add_argument("--prepare", type=Path, metavar="MIRRORS", help="export the corpora")
    parser.add_argument("--repeat", type=int, default=3, help="timed scans per corpus")
    parser.add_argument("--show", action="store_true", help="list every labelled singleton")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    corpora, singletons, verdicts = load_manifest(args.manifest, args.corpus_root)
    if args.prepare is not None:
        return prepare(corpora, args.prepare)
    present = [c for c in corpora if all((c.root / p).exists() for p in c.paths)]
    missing = [c for c in corpora if c not in present]
    if not present:
        print(
            f"eval_audit: skipped: no corpus found under {args.corpus_root} "
            f"(export them with --prepare MIRRORS, or score the in-repo fixtures with "
            f"--manifest {HERE / 'audit_labels' / 'fixtures.toml'})"
        )
        return 0
    for corpus in missing:
        print(f"eval_audit: {corpus.name} not found at {corpus.root}: left out")
    for corpus in present:
        marker = corpus.root / MARKER
        if corpus.commit and marker.exists():
            recorded = marker.read_text(encoding="utf-8").strip()
            if recorded != corpus.commit:
                print(f"eval_audit: {corpus.name} is at {recorded}, labels are for {corpus.commit}")
        scan(corpus, args.repeat)
    print(f"python {sys.version.split()[0]}; corpora:")
    for corpus in present:
        print(f"  {corpus.name} {corpus.repo} {corpus.commit} {' '.join(corpus.paths)}")
    scores = evaluate(present, singletons, verdicts, show=args.show)
    print("\n## targets")
    checks = [
        ("recall >= 90%", scores.recall >= TARGET_RECALL),
        (">= 20,000 lines/s", scores.lines_per_second >= TARGET_LINES_PER_SECOND),
    ]
    for kind, (per_10k, errors) in scores.noise.items():
        checks.append((f"no error on {kind}", errors == 0))
        checks.append((f"<= 0.2 findings per 10k lines on {kind}", per_10k <= TARGET_CLEAN_PER_10K))
    for label, ok in checks:
        print(f"  {'met ' if ok else 'MISSED'} {label}")
    if args.check and not all(ok for _, ok in checks):
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
