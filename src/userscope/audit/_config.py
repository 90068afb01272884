"""Configuration of ``userscope audit``: defaults and ``[tool.userscope.audit]`` loading."""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from fnmatch import translate
from pathlib import Path
from types import MappingProxyType
from typing import Any

from userscope.errors import UserscopeError

from ._rules import RULES

__all__ = [
    "DEFAULT_PATTERNS",
    "AuditConfig",
    "AuditConfigError",
    "AuditError",
    "find_config_file",
    "load_config",
]

DEFAULT_PATTERNS: tuple[str, ...] = (
    "Registry",
    "Bridge",
    "Manager",
    "Pool",
    "Session",
    "State",
    "Cache",
    "Agent",
    "Locator",
    "Store",
)
"""Class-name patterns that mark a class as stateful (see ``AuditConfig.patterns``)."""

DEFAULT_SAFE_PATTERNS: tuple[str, ...] = ("Settings", "Config", "Configuration", "Options")

DEFAULT_USER_NAMES: tuple[str, ...] = (
    "user",
    "user_id",
    "userid",
    "uid",
    "username",
    "user_*",
    "*_user",
    "*_user_id",
    "context",
    "ctx",
    "*_context",
    "*_ctx",
    "session",
    "session_id",
    "sid",
    "*_session",
    "*_session_id",
    "thread_id",
    "*_thread_id",
    "run_id",
    "*_run_id",
    "connection_id",
    "*_connection_id",
    "conn_id",
    "execution_id",
    "*_execution_id",
    "request_id",
    "*_request_id",
    "tenant_id",
    "*_tenant_id",
    "conversation_id",
    "*_conversation_id",
    "chat_id",
    "websocket",
    "*_websocket",
    "ws",
    "socket_id",
)
"""Identity keys: names that identify a user, tenant, session, thread, run, connection,
execution or request (see ``AuditConfig.user_names``)."""

DEFAULT_IDENTITY_ATTRIBUTES: tuple[str, ...] = (
    "user",
    "current_user",
    "user_id",
    "tenant",
    "tenant_id",
    "session_id",
    "session",
    "permissions",
    "roles",
    "principal",
    "identity",
    "auth_context",
    "security_context",
)
"""Instance attributes (leading underscores ignored) that hold who is calling."""

DEFAULT_INFRASTRUCTURE_PATTERNS: tuple[str, ...] = (
    "Engine",
    "engine",
    "sessionmaker",
    "Breaker",
    "*Metric*",
    "Counter",
    "Gauge",
    "Histogram",
    "Limiter",
    "Executor",
    "Client",
    "client",
    "Pool",
    "Tracer",
    "Meter",
    "Scheduler",
    "Semaphore",
    "Lock",
    "Server",
    "*Config*",
    "*Settings*",
    "Configuration",
    "Options",
)
"""Class or factory names of infrastructure shared by design (severity ``note``)."""

DEFAULT_EXCLUDE: tuple[str, ...] = (
    ".git",
    ".hg",
    ".venv",
    "venv",
    ".tox",
    ".nox",
    "__pycache__",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    "node_modules",
    "build",
    "dist",
    "site-packages",
)

_GLOB_CHARS = re.compile(r"[*?\[]")


class AuditError(UserscopeError, ValueError):
    """Base class of the audit's input errors (bad configuration or baseline file).

    Attributes:
        path: The file at fault, or ``None`` when the problem is not tied to a file.
        problem: What is wrong, in one sentence.
        hint: What to do next.

    Example:
        >>> from userscope.audit import AuditError
        >>> err = AuditError(None, "no paths given", "pass at least one PATH")
        >>> err.problem
        'no paths given'
    """

    def __init__(self, path: Path | None, problem: str, hint: str) -> None:
        self.path = path
        self.problem = problem
        self.hint = hint
        where = f"{path}: " if path is not None else ""
        super().__init__(f"{where}{problem}; {hint}")


class AuditConfigError(AuditError):
    """The ``[tool.userscope.audit]`` table (or ``--config`` file) is invalid.

    Attributes:
        key: The offending key, or ``None`` when the whole file is unreadable.

    Example:
        >>> from userscope.audit import AuditConfigError
        >>> from userscope.audit import AuditConfig
        >>> try:
        ...     AuditConfig.from_mapping({"colour": "red"})
        ... except AuditConfigError as err:
        ...     print(err.key)
        colour
    """

    def __init__(self, path: Path | None, key: str | None, problem: str, hint: str) -> None:
        self.key = key
        super().__init__(path, problem, hint)


class _NameMatcher:
    """Matches identifiers against patterns: bare words are suffixes, others are globs."""

    __slots__ = ("_regex", "_suffixes")

    def __init__(self, patterns: Iterable[str], *, suffix_words: bool, ignore_case: bool) -> None:
        suffixes: list[str] = []
        globs: list[str] = []
        for pattern in patterns:
            if suffix_words and not _GLOB_CHARS.search(pattern):
                suffixes.append(pattern)
            else:
                globs.append(translate(pattern))
        self._suffixes = tuple(suffixes)
        flags = re.IGNORECASE if ignore_case else 0
        self._regex = re.compile("|".join(globs), flags) if globs else None

    def __call__(self, name: str) -> bool:
        if self._suffixes and name.endswith(self._suffixes):
            return True
        return self._regex is not None and self._regex.match(name) is not None


def _str_tuple(path: Path | None, key: str, value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise AuditConfigError(
            path,
            key,
            f"`{key}` must be a list of strings, got {value!r}",
            f'write `{key} = ["..."]`',
        )
    return tuple(value)


def _accessors(path: Path | None, value: object) -> Mapping[str, str]:
    key = "deprecated-accessors"
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return MappingProxyType(dict.fromkeys(value, ""))
    if isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        return MappingProxyType(dict(value))
    raise AuditConfigError(
        path,
        key,
        f"`{key}` must be a list of names or a table of name = hint strings, got {value!r}",
        f'write `{key} = ["app.ws.get_bridge"]` or `[tool.userscope.audit.{key}]`',
    )


@dataclass(frozen=True, slots=True)
class AuditConfig:
    """Settings of one audit run, usually read from ``[tool.userscope.audit]``.

    Name patterns (``patterns``, ``safe_patterns``) are matched against class
    names: a bare word such as ``"Registry"`` matches names *ending* in it
    (``AgentRegistry``); anything containing ``*``, ``?`` or ``[`` is a
    case-sensitive glob (``"*Registry*"``). ``user_names`` are globs matched
    case-insensitively against parameter names and subscript keys.

    Attributes:
        patterns: Class-name patterns of stateful classes (US001, US005); used when
            the class is not defined in the scanned tree (otherwise its body decides).
        safe_patterns: Class-name patterns that are never stateful (settings,
            configuration); they win over ``patterns`` and silence US004.
        user_names: Identity keys: parameter/key names that identify a user, tenant,
            session, thread, run, connection, execution or request (US005, US006,
            US008 and the class-body checks). ``identity-keys`` in the config.
        identity_attributes: Instance attribute names (globs, case-insensitive,
            leading underscores ignored) that hold the calling user (``_user``,
            ``_tenant``, ``_permissions``): an object with one is per-user state.
        infrastructure_patterns: Class or factory names of infrastructure shared by
            design (engines, pools, breakers, metrics, configs); without identity
            evidence their findings are ``note``.
        exclude: Globs of paths to skip. A glob without ``/`` matches any path
            component (``"migrations"``); one with ``/`` matches the path relative
            to ``root`` (``"tests/fixtures/*"``).
        deprecated_accessors: Accessor name -> fix hint (empty for the default
            hint) reported by US007. Bare names match any call with that final
            name; dotted names match the import-resolved call target.
        disable: Rule codes not to report.
        root: Directory that relative ``exclude`` globs are resolved against
            (the directory of the pyproject.toml that was read).

    Example:
        >>> from userscope.audit import AuditConfig
        >>> config = AuditConfig.from_mapping({"extend-patterns": ["Hub"]})
        >>> config.is_stateful("EventHub"), config.is_stateful("Settings")
        (True, False)
    """

    patterns: tuple[str, ...] = DEFAULT_PATTERNS
    safe_patterns: tuple[str, ...] = DEFAULT_SAFE_PATTERNS
    user_names: tuple[str, ...] = DEFAULT_USER_NAMES
    identity_attributes: tuple[str, ...] = DEFAULT_IDENTITY_ATTRIBUTES
    infrastructure_patterns: tuple[str, ...] = DEFAULT_INFRASTRUCTURE_PATTERNS
    exclude: tuple[str, ...] = DEFAULT_EXCLUDE
    deprecated_accessors: Mapping[str, str] = field(
        default_factory=lambda: MappingProxyType({}), hash=False
    )
    disable: frozenset[str] = frozenset()
    root: Path | None = None
    _stateful: _NameMatcher = field(init=False, repr=False, compare=False)
    _safe: _NameMatcher = field(init=False, repr=False, compare=False)
    _user: _NameMatcher = field(init=False, repr=False, compare=False)
    _identity_attr: _NameMatcher = field(init=False, repr=False, compare=False)
    _infra: _NameMatcher = field(init=False, repr=False, compare=False)
    _exclude_names: frozenset[str] = field(init=False, repr=False, compare=False)
    _exclude_name_globs: re.Pattern[str] | None = field(init=False, repr=False, compare=False)
    _exclude_path_globs: re.Pattern[str] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.disable) - set(RULES))
        if unknown:
            raise AuditConfigError(
                None,
                "disable",
                f"unknown rule code(s) {', '.join(unknown)}",
                f"use codes from {', '.join(RULES)}",
            )
        set_ = object.__setattr__
        set_(self, "_stateful", _NameMatcher(self.patterns, suffix_words=True, ignore_case=False))
        set_(self, "_safe", _NameMatcher(self.safe_patterns, suffix_words=True, ignore_case=False))
        set_(self, "_user", _NameMatcher(self.user_names, suffix_words=False, ignore_case=True))
        set_(
            self,
            "_identity_attr",
            _NameMatcher(self.identity_attributes, suffix_words=False, ignore_case=True),
        )
        set_(
            self,
            "_infra",
            _NameMatcher(self.infrastructure_patterns, suffix_words=True, ignore_case=False),
        )
        names: set[str] = set()
        name_globs: list[str] = []
        path_globs: list[str] = []
        for pattern in self.exclude:
            pattern = pattern.rstrip("/")
            if "/" in pattern:
                path_globs.append(translate(pattern.removeprefix("./")))
            elif _GLOB_CHARS.search(pattern):
                name_globs.append(translate(pattern))
            else:
                names.add(pattern)
        set_(self, "_exclude_names", frozenset(names))
        set_(self, "_exclude_name_globs", re.compile("|".join(name_globs)) if name_globs else None)
        set_(self, "_exclude_path_globs", re.compile("|".join(path_globs)) if path_globs else None)

    @classmethod
    def from_mapping(
        cls, data: Mapping[str, Any], *, path: Path | None = None, root: Path | None = None
    ) -> AuditConfig:
        """Build a config from a ``[tool.userscope.audit]`` table.

        Keys may use ``-`` or ``_``. ``patterns``, ``safe-patterns``,
        ``identity-keys`` (alias ``user-names``), ``identity-attributes``,
        ``infrastructure-patterns`` and ``exclude`` replace the defaults; the same
        names prefixed with ``extend-`` add to them.

        Args:
            data: The parsed table.
            path: File the table came from (used in error messages).
            root: Directory relative ``exclude`` globs are resolved against.

        Returns:
            The validated config.

        Raises:
            AuditConfigError: On an unknown key or a value of the wrong type.

        Example:
            >>> from userscope.audit import AuditConfig
            >>> AuditConfig.from_mapping({"disable": ["US004"]}).disable
            frozenset({'US004'})
        """
        lists = {
            "patterns": "patterns",
            "safe_patterns": "safe_patterns",
            "user_names": "user_names",
            "identity_keys": "user_names",
            "identity_attributes": "identity_attributes",
            "infrastructure_patterns": "infrastructure_patterns",
            "exclude": "exclude",
        }
        values: dict[str, Any] = {}
        extend: dict[str, tuple[str, ...]] = {}
        for raw_key, value in data.items():
            key = raw_key.replace("-", "_")
            if key in lists:
                values[lists[key]] = _str_tuple(path, raw_key, value)
            elif key.startswith("extend_") and key[len("extend_") :] in lists:
                field_ = lists[key[len("extend_") :]]
                extend[field_] = extend.get(field_, ()) + _str_tuple(path, raw_key, value)
            elif key == "deprecated_accessors":
                values[key] = _accessors(path, value)
            elif key == "disable":
                values[key] = frozenset(_str_tuple(path, raw_key, value))
            else:
                known = sorted(
                    [k.replace("_", "-") for k in lists]
                    + [f"extend-{k.replace('_', '-')}" for k in lists]
                    + ["deprecated-accessors", "disable"]
                )
                raise AuditConfigError(
                    path,
                    raw_key,
                    f"unknown key `{raw_key}` in [tool.userscope.audit]",
                    f"use one of: {', '.join(known)}",
                )
        defaults = cls()
        for key, more in extend.items():
            values[key] = tuple(values.get(key, getattr(defaults, key))) + more
        try:
            return cls(root=root, **values)
        except AuditConfigError as err:
            raise AuditConfigError(path, err.key, err.problem, err.hint) from None

    def with_disabled(self, codes: Iterable[str]) -> AuditConfig:
        """Return a copy that additionally disables ``codes``.

        Args:
            codes: Rule codes such as ``"US004"``.

        Returns:
            The new config.

        Raises:
            AuditConfigError: If a code is not a known rule.

        Example:
            >>> from userscope.audit import AuditConfig
            >>> AuditConfig().with_disabled(["US007"]).disable
            frozenset({'US007'})
        """
        return replace(self, disable=self.disable | frozenset(codes))

    def is_stateful(self, class_name: str) -> bool:
        """Whether ``class_name`` matches ``patterns`` and not ``safe_patterns``.

        Example:
            >>> from userscope.audit import AuditConfig
            >>> AuditConfig().is_stateful("ThreadRunRegistry")
            True
        """
        return self._stateful(class_name) and not self._safe(class_name)

    def is_safe(self, class_name: str) -> bool:
        """Whether ``class_name`` matches ``safe_patterns`` (settings-like objects).

        Example:
            >>> from userscope.audit import AuditConfig
            >>> AuditConfig().is_safe("AppSettings")
            True
        """
        return self._safe(class_name)

    def is_user_name(self, name: str) -> bool:
        """Whether a parameter or key name identifies a user, session or context.

        Example:
            >>> from userscope.audit import AuditConfig
            >>> AuditConfig().is_user_name("user_id"), AuditConfig().is_user_name("limit")
            (True, False)
        """
        return self._user(name)

    def is_identity_attribute(self, name: str) -> bool:
        """Whether an instance attribute holds the calling user (leading ``_`` ignored).

        Example:
            >>> from userscope.audit import AuditConfig
            >>> AuditConfig().is_identity_attribute("_permissions")
            True
        """
        return self._identity_attr(name.lstrip("_"))

    def is_infrastructure(self, name: str) -> bool:
        """Whether a class or factory name is infrastructure shared by design.

        Example:
            >>> from userscope.audit import AuditConfig
            >>> AuditConfig().is_infrastructure("CircuitBreaker")
            True
        """
        return self._infra(name)

    def is_excluded(self, path: Path) -> bool:
        """Whether ``path`` matches ``exclude``.

        Example:
            >>> from userscope.audit import AuditConfig
            >>> from pathlib import Path
            >>> AuditConfig().is_excluded(Path("app/.venv/lib/x.py"))
            True
        """
        return any(self._excludes_name(part) for part in path.parts) or self._excludes_path(path)

    def _excludes_name(self, name: str) -> bool:
        if name in self._exclude_names:
            return True
        globs = self._exclude_name_globs
        return globs is not None and globs.match(name) is not None

    def _excludes_path(self, path: Path) -> bool:
        globs = self._exclude_path_globs
        if globs is None:
            return False
        if globs.match(path.as_posix()) is not None:
            return True
        if self.root is not None:
            relative = os.path.relpath(os.path.abspath(path), self.root)
            if not relative.startswith(".."):
                return globs.match(Path(relative).as_posix()) is not None
        return False


def find_config_file(start: Path) -> Path | None:
    """Find the nearest ``pyproject.toml`` with a ``[tool.userscope.audit]`` table.

    Searches ``start`` (or its directory, for a file) and then every parent.

    Args:
        start: A file or directory being audited.

    Returns:
        The pyproject.toml path, or ``None`` when no ancestor configures the audit.

    Example:
        >>> from userscope.audit import find_config_file
        >>> import tempfile
        >>> from pathlib import Path
        >>> find_config_file(Path(tempfile.gettempdir())) is None
        True
    """
    here = start.resolve()
    if not here.is_dir():
        here = here.parent
    for directory in (here, *here.parents):
        candidate = directory / "pyproject.toml"
        if candidate.is_file():
            try:
                data = tomllib.loads(candidate.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
                continue
            if isinstance(data.get("tool", {}).get("userscope", {}).get("audit"), dict):
                return candidate
    return None


def load_config(path: Path | None = None, *, start: Path | None = None) -> AuditConfig:
    """Load the audit configuration.

    With ``path``, read that file: its ``[tool.userscope.audit]`` table if it
    has one, otherwise its top-level table (a standalone ``audit.toml``).
    Without it, use the nearest pyproject.toml above ``start`` (default: the
    current directory) that has the table, or the defaults.

    Args:
        path: Explicit config file (``--config``).
        start: Where to start searching when ``path`` is not given.

    Returns:
        The config; ``root`` is the directory of the file that was read.

    Raises:
        AuditConfigError: If the file is missing, not valid TOML or has bad keys.

    Example:
        >>> from userscope.audit import load_config
        >>> import tempfile
        >>> from pathlib import Path
        >>> load_config(start=Path(tempfile.gettempdir())).patterns[:2]
        ('Registry', 'Bridge')
    """
    if path is None:
        path = find_config_file(start if start is not None else Path.cwd())
        if path is None:
            here = (start or Path.cwd()).resolve()
            return AuditConfig(root=here if here.is_dir() else here.parent)
        explicit = False
    else:
        explicit = True
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AuditConfigError(
            path, None, "config file does not exist", "check the --config path"
        ) from None
    except (OSError, UnicodeDecodeError) as err:
        raise AuditConfigError(
            path, None, f"cannot read config file ({err})", "check the file"
        ) from None
    except tomllib.TOMLDecodeError as err:
        raise AuditConfigError(
            path, None, f"invalid TOML ({err})", "fix the syntax of the file"
        ) from None
    table = data.get("tool", {}).get("userscope", {}).get("audit")
    if table is None:
        table = {} if (not explicit or "tool" in data) else data
    if not isinstance(table, dict):
        raise AuditConfigError(
            path,
            "tool.userscope.audit",
            "[tool.userscope.audit] must be a table",
            "use a TOML table",
        )
    return AuditConfig.from_mapping(table, path=path, root=path.resolve().parent)
