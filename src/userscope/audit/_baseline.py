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

__all__ = ["Baseline", "BaselineEntry", "BaselineError", "fingerprint"]

_FORMAT = "userscope-audit-baseline"
_VERSION = 2
_READABLE = (1, 2)
_NEVER = "US000"  # an unparsable file was not audited: never accept it


class BaselineError(AuditError):
    """A baseline file is missing, unreadable or not a userscope baseline.

    Example:
        >>> from userscope.audit import BaselineError
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

    Built from the path relative to ``base``, the rule code, the symbol and the
    whitespace-normalised source line, so inserting lines above a finding keeps
    it matched and a copy added elsewhere does not take over its identity.

    Args:
        finding: The finding.
        base: Directory paths are made relative to (the baseline's directory).

    Returns:
        A hex digest.

    Example:
        >>> from userscope.audit import fingerprint
        >>> from pathlib import Path
        >>> from userscope.audit import Finding
        >>> a = Finding("app.py", 3, 1, "US001", "m", "registry")
        >>> b = Finding("app.py", 9, 1, "US001", "m", "registry")
        >>> fingerprint(a, Path.cwd()) == fingerprint(b, Path.cwd())
        True
    """
    key = "\x1f".join(
        (_relative(finding.path, base), finding.code, finding.symbol, finding.snippet)
    )
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]


def _fingerprint_v1(finding: Finding, base: Path, occurrence: int) -> str:
    key = "\x1f".join(
        (_relative(finding.path, base), finding.code, finding.symbol, str(occurrence))
    )
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class BaselineEntry:
    """One accepted finding as recorded in a baseline file.

    Attributes:
        fingerprint: See ``fingerprint``.
        path: File, relative to the baseline's directory.
        code: Rule code.
        symbol: The finding's symbol.
        line: Line when recorded (for humans and for telling identical copies apart).
        context: Digest of the neighbouring lines when recorded.

    Example:
        >>> from userscope.audit import BaselineEntry
        >>> BaselineEntry("ab12", "app.py", "US001", "registry", 3).code
        'US001'
    """

    fingerprint: str
    path: str
    code: str
    symbol: str
    line: int
    context: str = ""


@dataclass(frozen=True, slots=True)
class Baseline:
    """Known findings that should not fail the audit.

    Matching ignores line numbers. When a file holds more copies of the same
    finding (same rule, symbol and source line) than the baseline accepted, the
    copies whose neighbouring lines match the recorded ones are the known ones:
    a duplicate added above an accepted finding is the one reported as new.

    Attributes:
        path: The baseline file.
        entries: The accepted findings.
        version: Format version of the file (1 files are still read).

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
    entries: tuple[BaselineEntry, ...]
    version: int = _VERSION

    @property
    def fingerprints(self) -> frozenset[str]:
        """Fingerprints of the accepted findings.

        Example:
            >>> from pathlib import Path
            >>> from userscope.audit import Baseline
            >>> Baseline(Path("b.json"), ()).fingerprints
            frozenset()
        """
        return frozenset(entry.fingerprint for entry in self.entries)

    @property
    def base(self) -> Path:
        """Directory finding paths are made relative to.

        Example:
            >>> from pathlib import Path
            >>> from userscope.audit import Baseline
            >>> Baseline(Path("/repo/audit.json"), ()).base.as_posix()
            '/repo'
        """
        return Path(os.path.abspath(self.path)).parent

    @classmethod
    def write(cls, path: Path, findings: Iterable[Finding]) -> Baseline:
        """Record ``findings`` in ``path`` (JSON) and return the baseline.

        Findings of unparsable files (``US000``) are never recorded: such a file
        was not audited, so accepting it would leave it unchecked for good.

        Args:
            path: Baseline file to create or replace.
            findings: Findings to accept.

        Returns:
            The written baseline.

        Raises:
            BaselineError: If the file cannot be written.

        Example:
            >>> from userscope.audit import Baseline
            >>> import tempfile
            >>> from pathlib import Path
            >>> Baseline.write(Path(tempfile.mkdtemp()) / "b.json", []).entries
            ()
        """
        base = Path(os.path.abspath(path)).parent
        entries = tuple(
            BaselineEntry(
                fingerprint(f, base), _relative(f.path, base), f.code, f.symbol, f.line, f.context
            )
            for f in sorted(findings)
            if f.code != _NEVER
        )
        baseline = cls(Path(path), entries)
        baseline._dump()
        return baseline

    def _dump(self) -> None:
        document = {
            "format": _FORMAT,
            "version": self.version,
            "findings": [
                {
                    "fingerprint": e.fingerprint,
                    "path": e.path,
                    "code": e.code,
                    "symbol": e.symbol,
                    "line": e.line,
                    "context": e.context,
                }
                for e in self.entries
            ],
        }
        try:
            Path(self.path).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        except OSError as err:
            raise BaselineError(
                Path(self.path),
                f"cannot write baseline ({err.strerror})",
                "check the directory exists and is writable",
            ) from None

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
            >>> from userscope.audit import Baseline
            >>> import tempfile
            >>> from pathlib import Path
            >>> file = Path(tempfile.mkdtemp()) / "b.json"
            >>> _ = Baseline.write(file, [])
            >>> Baseline.load(file).entries
            ()
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
        version = document.get("version")
        if version not in _READABLE:
            raise BaselineError(
                path,
                f"unsupported baseline version {version!r}",
                "regenerate it with this version of userscope (--write-baseline)",
            )
        entries: list[BaselineEntry] = []
        for entry in document["findings"]:
            if not isinstance(entry, dict) or not isinstance(entry.get("fingerprint"), str):
                raise BaselineError(path, f"malformed baseline entry {entry!r}", hint)
            line = entry.get("line")
            entries.append(
                BaselineEntry(
                    entry["fingerprint"],
                    str(entry.get("path", "")),
                    str(entry.get("code", "")),
                    str(entry.get("symbol", "")),
                    line if isinstance(line, int) else 0,
                    str(entry.get("context", "")),
                )
            )
        return cls(path, tuple(entries), version)

    def _match(self, findings: Iterable[Finding]) -> tuple[list[Finding], list[Finding], set[int]]:
        """``(new, known, indexes of the entries used)``."""
        base = self.base
        pool: dict[str, list[int]] = {}
        for index, entry in enumerate(self.entries):
            pool.setdefault(entry.fingerprint, []).append(index)
        groups: dict[str, list[Finding]] = {}
        order: list[Finding] = sorted(findings)
        if self.version == 1:
            seen: dict[tuple[str, str, str], int] = {}
            for f in order:
                key = (f.path, f.code, f.symbol)
                occurrence = seen.get(key, 0)
                seen[key] = occurrence + 1
                groups.setdefault(_fingerprint_v1(f, base, occurrence), []).append(f)
        else:
            for f in order:
                groups.setdefault(fingerprint(f, base), []).append(f)
        new: list[Finding] = []
        known: list[Finding] = []
        used: set[int] = set()
        for fp, current in groups.items():
            available = list(pool.get(fp, ()))
            if not available or current[0].code == _NEVER:
                new.extend(current)
                continue
            matched: list[Finding] = []
            rest: list[Finding] = []
            for f in current:  # first the copies whose neighbours are unchanged
                hit = next(
                    (i for i in available if f.context and self.entries[i].context == f.context),
                    None,
                )
                if hit is None:
                    rest.append(f)
                else:
                    available.remove(hit)
                    used.add(hit)
                    matched.append(f)
            for f in rest:  # then the nearest recorded line
                if not available:
                    new.append(f)
                    continue
                hit = min(available, key=lambda i: abs(self.entries[i].line - f.line))
                available.remove(hit)
                used.add(hit)
                matched.append(f)
            known.extend(matched)
        new.sort()
        known.sort()
        return new, known, used

    def split(self, findings: Iterable[Finding]) -> tuple[list[Finding], list[Finding]]:
        """Separate new findings from those recorded in the baseline.

        ``US000`` (unparsable file) findings are always new.

        Args:
            findings: Current findings.

        Returns:
            ``(new, known)``: findings to report and findings the baseline accepts.

        Example:
            >>> from userscope.audit import Baseline
            >>> from pathlib import Path
            >>> Baseline(Path("b.json"), ()).split([])
            ([], [])
        """
        new, known, _ = self._match(findings)
        return new, known

    def stale(self, findings: Iterable[Finding], scanned: Iterable[str]) -> list[BaselineEntry]:
        """Entries no current finding matches, in files that were scanned or are gone.

        Entries for files outside this run (not scanned, still present) are not
        stale: the run simply did not look at them.

        Args:
            findings: Every finding of the run (before the baseline is applied).
            scanned: Paths of the files the run scanned (``ScanResult.scanned``).

        Returns:
            The stale entries, in file order.

        Example:
            >>> from userscope.audit import Baseline, BaselineEntry, fingerprint
            >>> from pathlib import Path
            >>> from userscope.audit import Finding
            >>> old = Finding("gone.py", 1, 1, "US001", "m", "registry")
            >>> baseline = Baseline(Path("b.json"), (BaselineEntry(
            ...     fingerprint(old, Path.cwd()), "gone.py", "US001", "registry", 1),))
            >>> [e.path for e in baseline.stale([], [])]
            ['gone.py']
        """
        _, _, used = self._match(findings)
        base = self.base
        seen = {_relative(path, base) for path in scanned}
        return [
            entry
            for index, entry in enumerate(self.entries)
            if index not in used and (entry.path in seen or not (base / entry.path).exists())
        ]

    def without(self, stale: Iterable[BaselineEntry]) -> Baseline:
        """Rewrite the baseline file without ``stale`` entries and return it.

        Args:
            stale: Entries to drop (usually from ``stale``).

        Returns:
            The pruned baseline (written in the current format version).

        Raises:
            BaselineError: If the file cannot be written.

        Example:
            >>> from userscope.audit import Baseline
            >>> import tempfile
            >>> from pathlib import Path
            >>> file = Path(tempfile.mkdtemp()) / "b.json"
            >>> Baseline.write(file, []).without([]).entries
            ()
        """
        dropped = set(stale)
        pruned = Baseline(
            self.path, tuple(e for e in self.entries if e not in dropped), self.version
        )
        pruned._dump()
        return pruned
