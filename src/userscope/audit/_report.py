"""Output formats: text, JSON and SARIF 2.1.0."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path, PurePath
from typing import Any
from urllib.parse import quote

from ._finding import Finding
from ._rules import RULES, SEVERITIES, security_severity

__all__ = ["by_rule", "ordered", "render", "to_json", "to_sarif", "to_text"]

_SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"


def _version() -> str:
    try:
        return metadata.version("userscope")
    except metadata.PackageNotFoundError:
        return "0.0.0+unknown"


def ordered(findings: Sequence[Finding]) -> list[Finding]:
    """Findings in report order: by severity (errors first), then path, line and column.

    Example:
        >>> from userscope.audit._report import ordered
        >>> from userscope.audit import Finding
        >>> [f.code for f in ordered([Finding("a.py", 1, 1, "US001", "m"),
        ...                           Finding("b.py", 9, 1, "US006", "m")])]
        ['US006', 'US001']
    """
    return sorted(findings, key=lambda f: (f.rank, f.path, f.line, f.col, f.code))


def by_rule(findings: Sequence[Finding]) -> list[tuple[str, str, int]]:
    """``(severity, code, count)`` for every pair present, most severe first.

    Example:
        >>> from userscope.audit._report import by_rule
        >>> from userscope.audit import Finding
        >>> by_rule([Finding("a.py", 1, 1, "US001", "m"), Finding("a.py", 2, 1, "US001", "m")])
        [('warning', 'US001', 2)]
    """
    counts: dict[tuple[str, str], int] = {}
    for f in findings:
        counts[(f.severity, f.code)] = counts.get((f.severity, f.code), 0) + 1
    return [
        (severity, code, counts[(severity, code)])
        for severity in SEVERITIES
        for code in RULES
        if (severity, code) in counts
    ]


def _counts(findings: Sequence[Finding]) -> dict[str, int]:
    return {s: sum(1 for f in findings if f.severity == s) for s in SEVERITIES}


def to_text(findings: Sequence[Finding], *, files: int, suppressed: int = 0) -> str:
    """Human-readable report: a summary by severity and rule, then every finding.

    Findings are grouped by severity (``error``, ``warning``, ``note``), each as
    ``path:line:col CODE message`` followed by its fix.

    Args:
        findings: Findings to show.
        files: Number of files scanned (for the summary line).
        suppressed: Findings hidden by the baseline (for the summary line).

    Returns:
        The report, ending with a newline.

    Example:
        >>> from userscope.audit._report import to_text
        >>> from userscope.audit import scan_source
        >>> text = to_text(scan_source("registry = AgentRegistry()\\n", path="app.py"), files=1)
        >>> print(text.splitlines()[0])
        userscope audit: 1 finding in 1 file: 0 error, 1 warning, 0 note
        >>> text.splitlines()[4].split(" module-level")[0]
        'app.py:1:1 US001'
    """
    noun = "file" if files == 1 else "files"
    extra = f" ({suppressed} known in baseline)" if suppressed else ""
    if not findings:
        return f"userscope audit: no findings in {files} {noun}{extra}\n"
    counts = _counts(findings)
    word = "finding" if len(findings) == 1 else "findings"
    shown = ", ".join(f"{counts[s]} {s}" for s in SEVERITIES)
    out = [f"userscope audit: {len(findings)} {word} in {files} {noun}: {shown}{extra}"]
    for severity, code, count in by_rule(findings):
        out.append(f"  {severity:<8} {code} {RULES[code].name:<40} {count:>5}")
    current = ""
    for f in ordered(findings):
        if f.severity != current:
            current = f.severity
            out.append("")
            out.append(f"== {current} ({counts[current]}) ==")
        out.append(f"{f.path}:{f.line}:{f.col} {f.code} {f.message}")
        out.append(f"    fix: {f.hint}")
    return "\n".join(out) + "\n"


def to_json(findings: Sequence[Finding], *, files: int, lines: int, suppressed: int = 0) -> str:
    """Machine-readable report.

    Args:
        findings: Findings to include.
        files: Number of files scanned.
        lines: Number of lines scanned.
        suppressed: Findings hidden by the baseline.

    Returns:
        A JSON document ``{"version", "summary", "findings": [...]}``; the
        summary counts findings by severity and by ``(severity, rule)``, and
        findings come in the text report's order (most severe first).

    Example:
        >>> from userscope.audit._report import to_json
        >>> import json
        >>> json.loads(to_json([], files=0, lines=0))["summary"]["by_severity"]
        {'error': 0, 'warning': 0, 'note': 0}
    """
    document = {
        "version": 2,
        "summary": {
            "files": files,
            "lines": lines,
            "findings": len(findings),
            "suppressed_by_baseline": suppressed,
            "by_severity": _counts(findings),
            "by_rule": [
                {"severity": severity, "code": code, "rule": RULES[code].name, "count": count}
                for severity, code, count in by_rule(findings)
            ],
        },
        "findings": [
            {
                "path": f.path,
                "line": f.line,
                "column": f.col,
                "code": f.code,
                "rule": f.rule.name,
                "severity": f.severity,
                "level": f.severity,
                "message": f.message,
                "hint": f.hint,
                "symbol": f.symbol,
                "occurrence": f.occurrence,
            }
            for f in ordered(findings)
        ],
    }
    return json.dumps(document, indent=2) + "\n"


def _partial_fingerprint(finding: Finding) -> str:
    key = "\x1f".join(
        (finding.path, finding.code, finding.symbol, finding.snippet, str(finding.occurrence))
    )
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]


def to_sarif(
    findings: Sequence[Finding],
    *,
    known: Sequence[Finding] = (),
    baseline: bool = False,
) -> str:
    """SARIF 2.1.0 log for GitHub code scanning and other SARIF consumers.

    Every rule is listed in ``runs[0].tool.driver.rules``; each result has a
    ``ruleId``, ``ruleIndex``, ``level`` (the finding's severity), a
    ``security-severity`` property (8.0 error, 5.0 warning, 2.0 note), a
    ``message`` and one physical location (relative ``uri`` against
    ``%SRCROOT%``, ``startLine``/``startColumn``). With a baseline, results
    carry ``baselineState``: ``new`` for findings, ``unchanged`` for the
    baselined ``known`` ones (which are included rather than dropped).

    Args:
        findings: Findings to include.
        known: Findings the baseline accepts.
        baseline: Whether a baseline was applied (adds ``baselineState``).

    Returns:
        The SARIF document as JSON text.

    Example:
        >>> from userscope.audit._report import to_sarif
        >>> import json
        >>> json.loads(to_sarif([]))["version"]
        '2.1.0'
    """
    codes = list(RULES)
    rules: list[dict[str, Any]] = [
        {
            "id": rule.code,
            "name": rule.name,
            "shortDescription": {"text": rule.summary},
            "fullDescription": {"text": rule.summary},
            "help": {
                "text": f"Fix: {rule.hint} (docs/audit.md#{rule.help_anchor})",
                "markdown": f"**Fix:** {rule.hint}",
            },
            "defaultConfiguration": {"level": rule.level},
            "properties": {
                "tags": ["userscope", "singleton", "isolation", "security"],
                "security-severity": security_severity(rule.level),
            },
        }
        for rule in RULES.values()
    ]
    results: list[dict[str, Any]] = []
    states = [(f, "new") for f in findings] + [(f, "unchanged") for f in known]
    states.sort(key=lambda item: (item[0].rank, item[0].path, item[0].line, item[0].col))
    for f, state in states:
        path = PurePath(f.path)
        location: dict[str, Any] = (
            {"uri": Path(path).as_uri()}
            if path.is_absolute()
            else {"uri": quote(path.as_posix()), "uriBaseId": "%SRCROOT%"}
        )
        result: dict[str, Any] = {
            "ruleId": f.code,
            "ruleIndex": codes.index(f.code),
            "level": f.severity,
            "message": {"text": f"{f.message}. Fix: {f.hint}"},
            "locations": [
                {
                    "physicalLocation": {
                        "artifactLocation": location,
                        "region": {"startLine": f.line, "startColumn": f.col},
                    }
                }
            ],
            "partialFingerprints": {"userscopeFinding/v2": _partial_fingerprint(f)},
            "properties": {
                "severity": f.severity,
                "security-severity": security_severity(f.severity),
            },
        }
        if baseline:
            result["baselineState"] = state
        results.append(result)
    document = {
        "$schema": _SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "userscope-audit",
                        "version": _version(),
                        "rules": rules,
                    }
                },
                "columnKind": "unicodeCodePoints",
                "results": results,
            }
        ],
    }
    return json.dumps(document, indent=2) + "\n"


def render(
    fmt: str,
    findings: Sequence[Finding],
    *,
    files: int,
    lines: int,
    suppressed: int = 0,
    known: Sequence[Finding] | None = None,
) -> str:
    """Render findings in ``fmt`` (``text``, ``json`` or ``sarif``).

    Args:
        fmt: Output format.
        findings: Findings to show.
        files: Number of files scanned.
        lines: Number of lines scanned.
        suppressed: Findings hidden by the baseline.
        known: The findings the baseline accepted, when a baseline was applied
            (SARIF lists them with ``baselineState: unchanged``).

    Returns:
        The report text.

    Raises:
        ValueError: If ``fmt`` is not a known format.

    Example:
        >>> from userscope.audit import render
        >>> render("text", [], files=2, lines=10)
        'userscope audit: no findings in 2 files\\n'
    """
    if fmt == "text":
        return to_text(findings, files=files, suppressed=suppressed)
    if fmt == "json":
        return to_json(findings, files=files, lines=lines, suppressed=suppressed)
    if fmt == "sarif":
        return to_sarif(findings, known=known or (), baseline=known is not None)
    raise ValueError(f"unknown format {fmt!r}; use text, json or sarif")
