"""``userscope audit`` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from ._baseline import Baseline
from ._config import AuditConfigError, AuditError, load_config
from ._report import render
from ._rules import RULES
from ._scanner import scan_paths

__all__ = ["main"]

EXIT_CLEAN = 0
EXIT_FINDINGS = 1
EXIT_USAGE = 2

_EPILOG = """\
exit status: 0 no findings, 1 findings, 2 usage or configuration error.
rules: """ + ", ".join(f"{code} {rule.name}" for code, rule in RULES.items())


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
        0 when nothing was found, 1 when there are findings, 2 on a usage or
        configuration error (bad option, missing path, invalid config or baseline).

    Example:
        >>> import pathlib, tempfile
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
    findings = list(result.findings)
    if args.write_baseline is not None:
        try:
            Baseline.write(args.write_baseline, findings)
        except AuditError as err:
            return _error(str(err))
        print(
            f"userscope audit: wrote {len(findings)} finding(s) to {args.write_baseline}",
            file=sys.stderr,
        )
        return EXIT_CLEAN
    suppressed = 0
    if args.baseline is not None:
        try:
            baseline = Baseline.load(args.baseline)
        except AuditError as err:
            return _error(str(err))
        findings, known = baseline.split(findings)
        suppressed = len(known)
    report = render(
        args.format,
        findings,
        files=result.files_scanned,
        lines=result.lines_scanned,
        suppressed=suppressed,
    )
    if args.output is not None:
        try:
            args.output.write_text(report, encoding="utf-8")
        except OSError as err:
            return _error(f"{args.output}: cannot write report ({err.strerror})")
    else:
        sys.stdout.write(report)
    return EXIT_FINDINGS if findings else EXIT_CLEAN
