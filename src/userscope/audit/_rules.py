"""Rule catalogue of ``userscope audit``: stable codes, names, levels and fix hints."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

__all__ = ["RULES", "SEVERITIES", "Rule", "security_severity"]

Level = Literal["error", "warning", "note"]

SEVERITIES: tuple[Level, ...] = ("error", "warning", "note")
"""Severities from most to least severe.

``error``: per-user or per-request state shared process-wide (identity-keyed
containers, objects holding the current user). ``warning``: a stateful
process-wide object with no identity evidence. ``note``: infrastructure shared
by design (engines, pools, breakers, metrics, configs).
"""

_SECURITY_SEVERITY: Mapping[str, str] = MappingProxyType(
    {"error": "8.0", "warning": "5.0", "note": "2.0"}
)


def security_severity(level: str) -> str:
    """The SARIF ``security-severity`` score (GitHub code scanning) of a severity.

    Example:
        >>> from userscope.audit._rules import security_severity
        >>> security_severity("error"), security_severity("note")
        ('8.0', '2.0')
    """
    return _SECURITY_SEVERITY[level]


@dataclass(frozen=True, slots=True)
class Rule:
    """One audit rule: a stable code, what it finds and how to fix it.

    Codes never change meaning between releases, so baselines, inline
    ``# userscope: ignore[CODE]`` comments and code-scanning alerts stay valid.

    Attributes:
        code: Stable identifier, ``US000`` .. ``US008``.
        name: Short kebab-case name, used as the SARIF rule name.
        summary: One sentence saying what the rule finds.
        hint: What to do instead, in userscope terms (printed under each finding).
        level: Default severity (``error``, ``warning`` or ``note``); rules that
            judge what the object holds set each finding's own ``severity``.

    Example:
        >>> from userscope.audit import RULES
        >>> RULES["US001"].name
        'module-level-stateful-instance'
    """

    code: str
    name: str
    summary: str
    hint: str
    level: Level = "warning"

    @property
    def help_anchor(self) -> str:
        """Anchor of this rule's section in ``docs/audit.md`` (e.g. ``us001``).

        Example:
            >>> from userscope.audit import RULES
            >>> RULES["US003"].help_anchor
            'us003'
        """
        return self.code.lower()


_ALL = (
    Rule(
        code="US000",
        name="unparsable-file",
        summary="The file could not be read or parsed, so it was not audited.",
        hint=(
            "fix the syntax or encoding error, or list the file under `exclude` in "
            "[tool.userscope.audit]; nothing in it was checked"
        ),
        level="error",
    ),
    Rule(
        code="US001",
        name="module-level-stateful-instance",
        summary="A stateful object (registry, bridge, pool, ...) is created at module level.",
        hint=(
            "if it holds per-user or per-request data, declare it as a scoped provider "
            "(`UserScoped(Cls)`, `ConnectionScoped(Cls)` or `RequestScoped(Cls)`) and "
            "resolve it inside a scope; if it is shared by design, keep it process-wide "
            "and make sure it holds no per-user data"
        ),
    ),
    Rule(
        code="US002",
        name="lazy-global-accessor",
        summary="A function lazily creates or replaces a module global (the accessor pattern).",
        hint=(
            "replace the accessor with a scoped provider of the object it creates; while "
            "callers migrate, wrap the old accessor with "
            '`userscope.adapters.legacy.accessor(..., mode="warn")`'
        ),
    ),
    Rule(
        code="US003",
        name="class-level-singleton",
        summary=(
            "A class keeps its own single instance (`_instance` + `__new__`, `get_instance`, "
            "a classmethod caching `cls._x`)."
        ),
        hint=(
            "delete the `_instance`/`get_instance()` machinery and let the container own "
            "the lifetime: `UserScoped(Cls)` for per-user state, a plain `providers.Singleton` "
            "only for objects that hold no per-user data"
        ),
    ),
    Rule(
        code="US004",
        name="cached-zero-arg-factory",
        summary="`lru_cache`/`cache` turns a zero-argument factory into a hidden singleton.",
        hint=(
            "make the factory a provider (`RequestScoped(factory)` or `UserScoped(factory)`) "
            "so each scope gets its own object; caching is only safe for immutable settings"
        ),
    ),
    Rule(
        code="US005",
        name="singleton-provider-of-per-user-class",
        summary="A Singleton-family provider shares one per-user object across every user.",
        hint=(
            "declare the provider `UserScoped(...)` (or `ConnectionScoped`/`RequestScoped`) "
            "and inject the user through `CurrentContext()` so each user gets their own instance"
        ),
        level="error",
    ),
    Rule(
        code="US006",
        name="module-level-per-user-container",
        summary=(
            "A module-level dict/list/set keyed by an identity (user, session, thread, run, "
            "connection, ...) is mutated in functions."
        ),
        hint=(
            "keep per-user data on a `UserScoped` object resolved from the active scope; "
            "scope exit then drops it, instead of a process-wide map that leaks between users"
        ),
        level="error",
    ),
    Rule(
        code="US007",
        name="deprecated-accessor-call",
        summary="A call to an accessor listed as deprecated in [tool.userscope.audit].",
        hint=(
            "resolve the dependency from the container inside a scope (inject it with "
            "`Provide[Container.x]` or take it as a parameter) instead of the deprecated accessor"
        ),
    ),
    Rule(
        code="US008",
        name="class-level-per-user-container",
        summary=(
            "A class-level dict/list/set is keyed by an identity and mutated in methods "
            "(`cls._managers[user_id] = ...`): one map shared by every instance and user."
        ),
        hint=(
            "make the per-user object itself scoped (`UserScoped(Cls)`) so each user has "
            "their own; the class-level map and its identity key then go away"
        ),
        level="error",
    ),
)

RULES: Mapping[str, Rule] = MappingProxyType({rule.code: rule for rule in _ALL})
"""Every rule by code, in code order (read-only mapping)."""
