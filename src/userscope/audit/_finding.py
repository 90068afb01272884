"""The ``Finding`` record and the ``ScanResult`` of a run."""

from __future__ import annotations

from dataclasses import dataclass

from ._rules import RULES, SEVERITIES, Rule

__all__ = ["Finding", "ScanResult"]

_RANK: dict[str, int] = {severity: index for index, severity in enumerate(SEVERITIES)}


@dataclass(frozen=True, slots=True, order=True)
class Finding:
    """One place where a singleton pattern was found.

    Findings sort by ``(path, line, col, code)``.

    Attributes:
        path: File as given/discovered, with ``/`` separators (relative to the
            working directory when the file is below it).
        line: 1-based line of the construct.
        col: 1-based column (in characters) of the construct.
        code: Rule code, a key of ``RULES``.
        message: What was found, naming the symbol.
        symbol: Stable name of the construct (e.g. ``registry``,
            ``Container.user_state``, ``get_bridge``); with ``occurrence`` it
            identifies the finding across line shifts (baselines).
        occurrence: 0-based index among findings with the same path, code, symbol
            and source line.
        severity: ``error``, ``warning`` or ``note`` (see ``SEVERITIES``); the
            rule's default level when not given.
        advice: The fix for this finding, naming its class and scope; the rule's
            hint when empty (see ``hint``).
        snippet: The finding's source line, whitespace-normalised (baseline
            fingerprints use it instead of the line number).
        context: Digest of the neighbouring source lines (tells identical
            copies apart in baselines).

    Example:
        >>> from userscope.audit import scan_source
        >>> [finding] = scan_source("registry = AgentRegistry()\\n", path="app.py")
        >>> finding.code, finding.line, finding.symbol, finding.severity
        ('US001', 1, 'registry', 'warning')
    """

    path: str
    line: int
    col: int
    code: str
    message: str
    symbol: str = ""
    occurrence: int = 0
    severity: str = ""
    advice: str = ""
    snippet: str = ""
    context: str = ""

    def __post_init__(self) -> None:
        if not self.severity:
            object.__setattr__(self, "severity", RULES[self.code].level)
        elif self.severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {SEVERITIES}, got {self.severity!r}")

    @property
    def rank(self) -> int:
        """0 for ``error``, 1 for ``warning``, 2 for ``note`` (report order).

        Example:
            >>> from userscope.audit import Finding
            >>> Finding("a.py", 1, 1, "US006", "m").rank
            0
        """
        return _RANK[self.severity]

    @property
    def rule(self) -> Rule:
        """The rule that produced this finding.

        Example:
            >>> from userscope.audit import scan_source
            >>> scan_source("pool = ConnectionPool()\\n")[0].rule.name
            'module-level-stateful-instance'
        """
        return RULES[self.code]

    @property
    def hint(self) -> str:
        """How to fix it: the finding's own ``advice``, else the rule's hint.

        Example:
            >>> from userscope.audit import scan_source
            >>> scan_source("pool = ConnectionPool()\\n")[0].hint
            'keep `pool` process-wide; make sure it holds no per-user data'
        """
        return self.advice or RULES[self.code].hint


@dataclass(frozen=True, slots=True)
class ScanResult:
    """Outcome of ``scan_paths``.

    Attributes:
        findings: Findings left after inline ignores, sorted.
        files_scanned: Number of Python files read (including unparsable ones).
        lines_scanned: Total number of source lines read.
        ignored_inline: Findings silenced by ``# userscope: ignore`` and
            ``# userscope: ignore-file`` comments.
        scanned: Every file scanned, as shown in findings (``--list-stale`` uses it).

    Example:
        >>> from userscope.audit import ScanResult
        >>> ScanResult(findings=(), files_scanned=0, lines_scanned=0).clean
        True
    """

    findings: tuple[Finding, ...]
    files_scanned: int
    lines_scanned: int
    ignored_inline: int = 0
    scanned: tuple[str, ...] = ()

    @property
    def clean(self) -> bool:
        """True when there are no findings.

        Example:
            >>> from userscope.audit import ScanResult
            >>> ScanResult(findings=(), files_scanned=1, lines_scanned=3).clean
            True
        """
        return not self.findings
