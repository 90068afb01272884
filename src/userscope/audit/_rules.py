"""Rule catalogue of ``userscope audit``: stable codes, names, levels and fix hints."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

__all__ = ["RULES", "Rule"]

Level = Literal["error", "warning", "note"]


@dataclass(frozen=True, slots=True)
class Rule:
    """One audit rule: a stable code, what it finds and how to fix it.

    Codes never change meaning between releases, so baselines, inline
    ``# userscope: ignore[CODE]`` comments and code-scanning alerts stay valid.

    Attributes:
        code: Stable identifier, ``US000`` .. ``US007``.
        name: Short kebab-case name, used as the SARIF rule name.
        summary: One sentence saying what the rule finds.
        hint: What to do instead, in userscope terms (printed under each finding).
        level: Severity reported in SARIF (``error``, ``warning`` or ``note``).

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
            "declare it as a scoped provider in your container, e.g. "
            "`registry = UserScoped(AgentRegistry)`, and resolve it inside a scope "
            "instead of importing one process-wide instance"
        ),
    ),
    Rule(
        code="US002",
        name="lazy-global-accessor",
        summary="A function lazily creates or replaces a module global (the accessor pattern).",
        hint=(
            "replace the accessor with a scoped provider, e.g. "
            "`bridge = UserScoped(AgentWebSocketBridge)`; while callers migrate, wrap the "
            'old accessor with `userscope.adapters.legacy.accessor(..., mode="warn")`'
        ),
    ),
    Rule(
        code="US003",
        name="class-level-singleton",
        summary="A class keeps its own single instance (`_instance` + `__new__`, `get_instance`).",
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
        summary="A module-level dict/list/set keyed by user or session is mutated in functions.",
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
)

RULES: Mapping[str, Rule] = MappingProxyType({rule.code: rule for rule in _ALL})
"""Every rule by code, in code order (read-only mapping)."""
