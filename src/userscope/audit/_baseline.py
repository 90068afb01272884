"""Baselines: record today's findings so only new ones fail the audit."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ._config import AuditError
from ._finding import Finding

__all__ = ["Baseline", "BaselineError", "fingerprint"]

_FORMAT = "userscope-audit-baseline"
_VERSION = 1


class BaselineError(AuditError):
    """A baseline file is missing, unreadable or not a userscope baseline.

    Example:
        >>> from pathlib import Path
        >>> from userscope.audit import Baseline
        >>> try:
        ...     Baseline.load(Path("/nonexistent/baseline.json"))
        ... except BaselineError as err:
        ...     print(err.problem)
        baseline file does not exist
    """


def _relative(path: str, base: Path) -> str:
    absolute = os.path.abspath(path)
    try:
        return Path(os.path.relpath(absolute, base)).as_posix()
    except ValueError:  # another drive on Windows
        return Path(absolute).as_posix()


def fingerprint(finding: Finding, base: Path) -> str:
    """Stable identity of a finding, independent of its line and column.

    Built from the path relative to ``base``, the rule code, the symbol and
    the occurrence index, so inserting lines above a finding keeps it matched.

    Args:
        finding: The finding.
        base: Directory paths are made relative to (the baseline's directory).

    Returns:
        A hex digest.

    Example:
        >>> from pathlib import Path
        >>> from userscope.audit import Finding
        >>> a = Finding("app.py", 3, 1, "US001", "m", "registry")
        >>> b = Finding("app.py", 9, 1, "US001", "m", "registry")
        >>> fingerprint(a, Path.cwd()) == fingerprint(b, Path.cwd())
        True
    """
    key = "\x1f".join(
        (_relative(finding.path, base), finding.code, finding.symbol, str(finding.occurrence))
    )
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Baseline:
    """Known findings that should not fail the audit.

    Attributes:
        path: The baseline file.
        fingerprints: Fingerprints of the accepted findings.

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> from userscope.audit import Baseline, scan_source
        >>> findings = scan_source("registry = AgentRegistry()\\n", path="app.py")
        >>> file = Path(tempfile.mkdtemp()) / "baseline.json"
        >>> baseline = Baseline.write(file, findings)
        >>> new, known = Baseline.load(file).split(findings)
        >>> len(new), [f.code for f in known]
        (0, ['US001'])
    """

    path: Path
    fingerprints: frozenset[str]

    @property
    def base(self) -> Path:
        """Directory finding paths are made relative to.

        Example:
            >>> from pathlib import Path
            >>> Baseline(Path("/repo/audit.json"), frozenset()).base.as_posix()
            '/repo'
        """
        return Path(os.path.abspath(self.path)).parent

    @classmethod
    def write(cls, path: Path, findings: Iterable[Finding]) -> Baseline:
        """Record ``findings`` in ``path`` (JSON) and return the baseline.

        The file lists each finding's fingerprint with its path, code, symbol
        and current line (for humans and diffs; matching ignores the line).

        Args:
            path: Baseline file to create or replace.
            findings: Findings to accept.

        Returns:
            The written baseline.

        Raises:
            BaselineError: If the file cannot be written.

        Example:
            >>> import tempfile
            >>> from pathlib import Path
            >>> Baseline.write(Path(tempfile.mkdtemp()) / "b.json", []).fingerprints
            frozenset()
        """
        base = Path(os.path.abspath(path)).parent
        entries = [
            {
                "fingerprint": fingerprint(f, base),
                "path": _relative(f.path, base),
                "code": f.code,
                "symbol": f.symbol,
                "occurrence": f.occurrence,
                "line": f.line,
            }
            for f in sorted(findings)
        ]
        document = {"format": _FORMAT, "version": _VERSION, "findings": entries}
        try:
            Path(path).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        except OSError as err:
            raise BaselineError(
                Path(path), f"cannot write baseline ({err.strerror})", "check the directory exists"
            ) from None
        return cls(Path(path), frozenset(e["fingerprint"] for e in entries))  # type: ignore[misc]

    @classmethod
    def load(cls, path: Path) -> Baseline:
        """Read a baseline written by ``Baseline.write`` / ``--write-baseline``.

        Args:
            path: The baseline file.

        Returns:
            The baseline.

        Raises:
            BaselineError: If the file is missing, not JSON or not a baseline.

        Example:
            >>> import tempfile
            >>> from pathlib import Path
            >>> file = Path(tempfile.mkdtemp()) / "b.json"
            >>> _ = Baseline.write(file, [])
            >>> Baseline.load(file).fingerprints
            frozenset()
        """
        path = Path(path)
        hint = "create it with `userscope audit PATH --write-baseline FILE`"
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise BaselineError(path, "baseline file does not exist", hint) from None
        except (OSError, UnicodeDecodeError) as err:
            raise BaselineError(path, f"cannot read baseline ({err})", hint) from None
        except json.JSONDecodeError as err:
            raise BaselineError(path, f"baseline is not valid JSON ({err.msg})", hint) from None
        if (
            not isinstance(document, dict)
            or document.get("format") != _FORMAT
            or not isinstance(document.get("findings"), list)
        ):
            raise BaselineError(path, "not a userscope audit baseline", hint)
        if document.get("version") != _VERSION:
            raise BaselineError(
                path,
                f"unsupported baseline version {document.get('version')!r}",
                "regenerate it with this version of userscope (--write-baseline)",
            )
        prints: set[str] = set()
        for entry in document["findings"]:
            if not isinstance(entry, dict) or not isinstance(entry.get("fingerprint"), str):
                raise BaselineError(path, f"malformed baseline entry {entry!r}", hint)
            prints.add(entry["fingerprint"])
        return cls(path, frozenset(prints))

    def split(self, findings: Iterable[Finding]) -> tuple[list[Finding], list[Finding]]:
        """Separate new findings from those recorded in the baseline.

        Args:
            findings: Current findings.

        Returns:
            ``(new, known)``: findings to report and findings the baseline accepts.

        Example:
            >>> from pathlib import Path
            >>> Baseline(Path("b.json"), frozenset()).split([])
            ([], [])
        """
        base = self.base
        new: list[Finding] = []
        known: list[Finding] = []
        for finding in findings:
            (known if fingerprint(finding, base) in self.fingerprints else new).append(finding)
        return new, known
