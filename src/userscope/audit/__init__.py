"""Static audit of singleton patterns: the ``userscope audit`` command.

Scan a code base for module-level registries, lazy global accessors,
class-level singletons, cached zero-argument factories, Singleton-family
providers of per-user classes, module-level and class-level per-user maps and
deprecated accessor calls. Each object is judged by what its class body keeps
(state keyed by an identity, attributes holding the user) and ranked
``error``/``warning``/``note``, with a fix naming the scope that fits.

Example:
    >>> from userscope.audit import scan_source
    >>> [(f.code, f.line) for f in scan_source("registry = AgentRegistry()\\n")]
    [('US001', 1)]
"""

from ._baseline import Baseline, BaselineEntry, BaselineError, fingerprint
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
from ._rules import RULES, SEVERITIES, Rule
from ._scanner import iter_python_files, scan_paths, scan_source

__all__ = [
    "DEFAULT_PATTERNS",
    "RULES",
    "SEVERITIES",
    "AuditConfig",
    "AuditConfigError",
    "AuditError",
    "Baseline",
    "BaselineEntry",
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
