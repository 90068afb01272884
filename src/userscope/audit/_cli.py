"""``userscope audit`` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from ._baseline import Baseline
from ._config import AuditConfigError, AuditError, load_config
from ._finding import Finding
from ._report import render
from ._rules import RULES, SEVERITIES
from ._scanner import scan_paths

__all__ = ["main"]

EXIT_CLEAN = 0
EXIT_FINDINGS = 1  # the most severe finding reported is an error
EXIT_USAGE = 2
EXIT_WARNING = 3  # ... a warning
EXIT_NOTE = 4  # ... a note
_EXIT_BY_SEVERITY = {"error": EXIT_FINDINGS, "warning": EXIT_WARNING, "note": EXIT_NOTE}

_EPILOG = """\
severities:
  error    per-user or per-request state shared process-wide (identity-keyed
           containers, objects holding the current user)
  warning  a stateful process-wide object with no identity evidence
  note     infrastructure shared by design (engines, pools, breakers, metrics,
           configs): keep it process-wide, make sure it holds no per-user data

exit status (from the most severe finding reported):
  0 no findings   1 error   3 warning   4 note   2 usage or configuration error

silencing findings:
  x = Registry()  # userscope: ignore              every rule, this line
  x = Registry()  # userscope: ignore[US001,US002] these rules, this line
  # userscope: ignore-file                         every rule, whole file
  # userscope: ignore-file[US004]                  these rules, whole file
  or record today's findings once with --write-baseline and pass --baseline.

rules:
""" + "\n".join(f"  {code} {rule.name} ({rule.level})" for code, rule in RULES.items())


def _codes(value: str) -> list[str]:
    codes = [c.strip().upper() for c in value.split(",") if c.strip()]
    unknown = [c for c in codes if c not in RULES]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown rule code(s) {', '.join(unknown)} (known: {', '.join(RULES)})"
        )
    return codes


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="userscope", description="userscope command line tools.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    audit = commands.add_parser(
        "audit",
        help="find module-level singletons and per-user state shared between users",
        description=(
            "Statically scan Python files for singleton patterns that leak state "
            "between users, and say how to replace each with a userscope scope."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    audit.add_argument("paths", nargs="+", metavar="PATH", help="files or directories to scan")
    audit.add_argument(
        "--format",
        choices=("text", "json", "sarif"),
        default="text",
        help="output format (default: text)",
    )
    audit.add_argument("-o", "--output", type=Path, help="write the report to this file")
    audit.add_argument(
        "--config",
        type=Path,
        help="read settings from this TOML file instead of the nearest pyproject.toml",
    )
    audit.add_argument(
        "--baseline", type=Path, help="do not report findings recorded in this baseline file"
    )
    audit.add_argument(
        "--write-baseline",
        type=Path,
        metavar="FILE",
        help="record every current finding in FILE and exit 0",
    )
    audit.add_argument(
        "--min-severity",
        choices=SEVERITIES,
        default="note",
        help="report only findings at least this severe (default: note, i.e. all)",
    )
    audit.add_argument(
        "--list-stale",
        action="store_true",
        help="with --baseline: list baseline entries no finding matches any more, exit 0",
    )
    audit.add_argument(
        "--prune-baseline",
        action="store_true",
        help="with --baseline: remove the stale entries from the baseline file, exit 0",
    )
    audit.add_argument(
        "--disable",
        type=_codes,
        action="extend",
        default=[],
        metavar="CODES",
        help="comma-separated rule codes not to report (adds to the config)",
    )
    return parser


def _error(message: str) -> int:
    print(f"userscope audit: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``userscope`` command line and return its exit status.

    ``argv`` is the argument list after the program name, starting with the
    subcommand (``["audit", "src/"]``); ``sys.argv[1:]`` when omitted.

    Args:
        argv: Command-line arguments.

    Returns:
        0 when nothing was reported; otherwise the most severe finding decides:
        1 error, 3 warning, 4 note. 2 on a usage or configuration error (bad
        option, missing path, invalid config or baseline).

    Example:
        >>> import pathlib, tempfile
        >>> from userscope.audit import main
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (folder / "app.py").write_text("app = object()\\n")
        >>> main(["audit", str(folder)])
        userscope audit: no findings in 1 file
        0
    """
    parser = _parser()
    try:
        args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    paths: list[str] = args.paths
    if (args.list_stale or args.prune_baseline) and args.baseline is None:
        option = "--list-stale" if args.list_stale else "--prune-baseline"
        return _error(f"{option} needs --baseline FILE (the baseline to check)")
    try:
        config = load_config(args.config, start=Path(paths[0]))
        if args.disable:
            config = config.with_disabled(args.disable)
    except AuditConfigError as err:
        return _error(str(err))
    try:
        result = scan_paths(paths, config)
    except FileNotFoundError as err:
        return _error(f"{err.filename}: path does not exist")
    floor = SEVERITIES.index(args.min_severity)
    findings = [f for f in result.findings if f.rank <= floor]
    if args.write_baseline is not None:
        try:
            written = Baseline.write(args.write_baseline, findings)
        except AuditError as err:
            return _error(str(err))
        skipped = len(findings) - len(written.entries)
        extra = f" ({skipped} unparsable file(s) not recorded)" if skipped else ""
        print(
            f"userscope audit: wrote {len(written.entries)} finding(s) to "
            f"{args.write_baseline}{extra}",
            file=sys.stderr,
        )
        return EXIT_CLEAN
    known: list[Finding] | None = None
    if args.baseline is not None:
        try:
            baseline = Baseline.load(args.baseline)
        except AuditError as err:
            return _error(str(err))
        if args.list_stale or args.prune_baseline:
            return _stale(baseline, findings, result.scanned, prune=args.prune_baseline)
        findings, known = baseline.split(findings)
    report = render(
        args.format,
        findings,
        files=result.files_scanned,
        lines=result.lines_scanned,
        suppressed=len(known or ()),
        known=known,
    )
    if args.output is not None:
        try:
            args.output.write_text(report, encoding="utf-8")
        except OSError as err:
            return _error(f"{args.output}: cannot write report ({err.strerror})")
    else:
        sys.stdout.write(report)
    if not findings:
        return EXIT_CLEAN
    return _EXIT_BY_SEVERITY[min(findings, key=lambda f: f.rank).severity]


def _stale(
    baseline: Baseline, findings: list[Finding], scanned: tuple[str, ...], *, prune: bool
) -> int:
    stale = baseline.stale(findings, scanned)
    if prune:
        try:
            baseline.without(stale)
        except AuditError as err:
            return _error(str(err))
        print(
            f"userscope audit: removed {len(stale)} stale entr{'y' if len(stale) == 1 else 'ies'}"
            f" from {baseline.path}",
            file=sys.stderr,
        )
        return EXIT_CLEAN
    for entry in stale:
        print(f"{entry.path}:{entry.line} {entry.code} {entry.symbol} (stale)")
    print(
        f"userscope audit: {len(stale)} stale baseline entr{'y' if len(stale) == 1 else 'ies'} "
        f"in {baseline.path}; remove them with --prune-baseline",
        file=sys.stderr,
    )
    return EXIT_CLEAN
