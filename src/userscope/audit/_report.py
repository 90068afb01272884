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
from ._rules import RULES

__all__ = ["render", "to_json", "to_sarif", "to_text"]

_SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"


def _version() -> str:
    try:
        return metadata.version("userscope")
    except metadata.PackageNotFoundError:
        return "0.0.0+unknown"


def to_text(findings: Sequence[Finding], *, files: int, suppressed: int = 0) -> str:
    """Human-readable report: ``path:line:col CODE message`` plus a fix hint.

    Args:
        findings: Findings to show.
        files: Number of files scanned (for the summary line).
        suppressed: Findings hidden by the baseline (for the summary line).

    Returns:
        The report, ending with a newline.

    Example:
        >>> from userscope.audit import scan_source
        >>> text = to_text(scan_source("pool = ConnectionPool()\\n", path="db.py"), files=1)
        >>> text.splitlines()[0].split(" module-level")[0]
        'db.py:1:1 US001'
    """
    out: list[str] = []
    for f in findings:
        out.append(f"{f.path}:{f.line}:{f.col} {f.code} {f.message}")
        out.append(f"    fix: {f.hint}")
    noun = "file" if files == 1 else "files"
    extra = f" ({suppressed} known in baseline)" if suppressed else ""
    if findings:
        word = "finding" if len(findings) == 1 else "findings"
        out.append(f"userscope audit: {len(findings)} {word} in {files} {noun}{extra}")
    else:
        out.append(f"userscope audit: no findings in {files} {noun}{extra}")
    return "\n".join(out) + "\n"


def to_json(findings: Sequence[Finding], *, files: int, lines: int, suppressed: int = 0) -> str:
    """Machine-readable report.

    Args:
        findings: Findings to include.
        files: Number of files scanned.
        lines: Number of lines scanned.
        suppressed: Findings hidden by the baseline.

    Returns:
        A JSON document ``{"version", "summary", "findings": [...]}``.

    Example:
        >>> import json
        >>> json.loads(to_json([], files=0, lines=0))["summary"]["findings"]
        0
    """
    document = {
        "version": 1,
        "summary": {
            "files": files,
            "lines": lines,
            "findings": len(findings),
            "suppressed_by_baseline": suppressed,
        },
        "findings": [
            {
                "path": f.path,
                "line": f.line,
                "column": f.col,
                "code": f.code,
                "rule": f.rule.name,
                "level": f.rule.level,
                "message": f.message,
                "hint": f.hint,
                "symbol": f.symbol,
                "occurrence": f.occurrence,
            }
            for f in findings
        ],
    }
    return json.dumps(document, indent=2) + "\n"


def _partial_fingerprint(finding: Finding) -> str:
    key = "\x1f".join((finding.path, finding.code, finding.symbol, str(finding.occurrence)))
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]


def to_sarif(findings: Sequence[Finding]) -> str:
    """SARIF 2.1.0 log for GitHub code scanning and other SARIF consumers.

    Every rule is listed in ``runs[0].tool.driver.rules``; each result has a
    ``ruleId``, ``ruleIndex``, ``level``, ``message`` and one physical location
    (relative ``uri`` against ``%SRCROOT%``, ``startLine``/``startColumn``).

    Args:
        findings: Findings to include.

    Returns:
        The SARIF document as JSON text.

    Example:
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
            "properties": {"tags": ["userscope", "singleton", "isolation"]},
        }
        for rule in RULES.values()
    ]
    results: list[dict[str, Any]] = []
    for f in findings:
        path = PurePath(f.path)
        location: dict[str, Any] = (
            {"uri": Path(path).as_uri()}
            if path.is_absolute()
            else {"uri": quote(path.as_posix()), "uriBaseId": "%SRCROOT%"}
        )
        results.append(
            {
                "ruleId": f.code,
                "ruleIndex": codes.index(f.code),
                "level": f.rule.level,
                "message": {"text": f"{f.message}. Fix: {f.hint}"},
                "locations": [
                    {
                        "physicalLocation": {
                            "artifactLocation": location,
                            "region": {"startLine": f.line, "startColumn": f.col},
                        }
                    }
                ],
                "partialFingerprints": {"userscopeFinding/v1": _partial_fingerprint(f)},
            }
        )
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
    fmt: str, findings: Sequence[Finding], *, files: int, lines: int, suppressed: int = 0
) -> str:
    """Render findings in ``fmt`` (``text``, ``json`` or ``sarif``).

    Args:
        fmt: Output format.
        findings: Findings to show.
        files: Number of files scanned.
        lines: Number of lines scanned.
        suppressed: Findings hidden by the baseline.

    Returns:
        The report text.

    Raises:
        ValueError: If ``fmt`` is not a known format.

    Example:
        >>> render("text", [], files=2, lines=10)
        'userscope audit: no findings in 2 files\\n'
    """
    if fmt == "text":
        return to_text(findings, files=files, suppressed=suppressed)
    if fmt == "json":
        return to_json(findings, files=files, lines=lines, suppressed=suppressed)
    if fmt == "sarif":
        return to_sarif(findings)
    raise ValueError(f"unknown format {fmt!r}; use text, json or sarif")
