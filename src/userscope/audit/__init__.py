"""Static audit of singleton patterns: the ``userscope audit`` command.

Scan a code base for module-level registries, lazy global accessors,
class-level singletons, cached zero-argument factories, Singleton-family
providers of per-user classes, module-level per-user maps and deprecated
accessor calls, each reported with a stable rule code and a userscope fix.

Example:
    >>> from userscope.audit import scan_source
    >>> [(f.code, f.line) for f in scan_source("registry = AgentRegistry()\\n")]
    [('US001', 1)]
"""

from ._baseline import Baseline, BaselineError, fingerprint
from ._cli import main
from ._config import (
    DEFAULT_PATTERNS,
    AuditConfig,
    AuditConfigError,
    AuditError,
    find_config_file,
    load_config,
)
from ._finding import Finding, ScanResult
from ._report import render
from ._rules import RULES, Rule
from ._scanner import iter_python_files, scan_paths, scan_source

__all__ = [
    "DEFAULT_PATTERNS",
    "RULES",
    "AuditConfig",
    "AuditConfigError",
    "AuditError",
    "Baseline",
    "BaselineError",
    "Finding",
    "Rule",
    "ScanResult",
    "find_config_file",
    "fingerprint",
    "iter_python_files",
    "load_config",
    "main",
    "render",
    "scan_paths",
    "scan_source",
]
