"""The ``Finding`` record and the ``ScanResult`` of a run."""

from __future__ import annotations

from dataclasses import dataclass

from ._rules import RULES, Rule

__all__ = ["Finding", "ScanResult"]


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
        occurrence: 0-based index among findings with the same path, code and symbol.

    Example:
        >>> from userscope.audit import scan_source
        >>> [finding] = scan_source("registry = AgentRegistry()\\n", path="app.py")
        >>> finding.code, finding.line, finding.symbol
        ('US001', 1, 'registry')
    """

    path: str
    line: int
    col: int
    code: str
    message: str
    symbol: str = ""
    occurrence: int = 0

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
        """How to fix it (the rule's hint).

        Example:
            >>> from userscope.audit import scan_source
            >>> "UserScoped" in scan_source("pool = ConnectionPool()\\n")[0].hint
            True
        """
        return RULES[self.code].hint


@dataclass(frozen=True, slots=True)
class ScanResult:
    """Outcome of ``scan_paths``.

    Attributes:
        findings: Findings left after inline ignores, sorted.
        files_scanned: Number of Python files read (including unparsable ones).
        lines_scanned: Total number of source lines read.
        ignored_inline: Findings silenced by ``# userscope: ignore`` comments.

    Example:
        >>> from userscope.audit import ScanResult
        >>> ScanResult(findings=(), files_scanned=0, lines_scanned=0).clean
        True
    """

    findings: tuple[Finding, ...]
    files_scanned: int
    lines_scanned: int
    ignored_inline: int = 0

    @property
    def clean(self) -> bool:
        """True when there are no findings.

        Example:
            >>> from userscope.audit import ScanResult
            >>> ScanResult(findings=(), files_scanned=1, lines_scanned=3).clean
            True
        """
        return not self.findings
