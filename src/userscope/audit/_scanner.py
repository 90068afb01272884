"""AST scanner: one read, one parse and one walk per file."""

from __future__ import annotations

import ast
import errno
import hashlib
import importlib.util
import io
import os
import re
import tokenize
import warnings
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePath

from ._classes import (
    CONTAINER_FACTORIES,
    CONTAINER_LITERALS,
    ClassIndex,
    ClassInfo,
    absolute_module,
    analyze_class,
    judge,
    scope_for,
)
from ._config import AuditConfig
from ._finding import Finding, ScanResult

__all__ = ["iter_python_files", "scan_paths", "scan_source"]

_SINGLETON_PROVIDERS = frozenset(
    {
        "Singleton",
        "ThreadSafeSingleton",
        "ThreadLocalSingleton",
        "ContextLocalSingleton",
        "DelegatedSingleton",
        "DelegatedThreadSafeSingleton",
        "DelegatedThreadLocalSingleton",
        "AbstractSingleton",
        "Resource",
    }
)
_CACHE_DECORATORS = frozenset({"functools.lru_cache", "functools.cache"})
_MUTATORS = frozenset(
    {
        "append",
        "add",
        "update",
        "setdefault",
        "pop",
        "popitem",
        "remove",
        "discard",
        "clear",
        "extend",
        "insert",
        "appendleft",
        "__setitem__",
        "__delitem__",
    }
)
_INSTANCE_ACCESSORS = ("get_instance", "instance", "getInstance", "shared_instance", "shared")
_INSTANCE_ATTR = re.compile(r"_\w*(?:instances?|singleton)$", re.IGNORECASE)
_IMMUTABLE_RESULTS = frozenset(
    {"str", "int", "float", "bool", "bytes", "complex", "frozenset", "tuple", "type", "Pattern"}
    | {"FrozenSet", "Tuple", "Type", "None"}
)
_USERISH_NAME = re.compile(r"user|session", re.IGNORECASE)
_AS_NAME = re.compile(r"\bas\s+([A-Za-z_][A-Za-z0-9_]*)")
_IGNORE = re.compile(r"#\s*userscope:\s*ignore(-file)?(?:\[([^\]]*)\])?")
_EXEMPT_CALLS = frozenset(
    {
        "getLogger",
        "get_logger",
        "getChild",
        "compile",
        "import_module",
        "__import__",
        "str",
        "int",
        "float",
        "bool",
        "bytes",
        "tuple",
        "frozenset",
        "len",
        "type",
        "TypeVar",
        "namedtuple",
        "NewType",
        "MappingProxyType",
        "Path",
        "PurePath",
        "get_type_hints",
        "signature",
        "getattr",
        "find_spec",
        "object",
        "Event",
        "Lock",
        "RLock",
        "Semaphore",
        "ContextVar",
        "local",
        "time",
        "monotonic",
        "perf_counter",
        "time_ns",
        "now",
        "utcnow",
        "uuid4",
        "getpid",
        "cpu_count",
        "get",
    }
)
_INFRA_TARGET = re.compile(
    r"client|engine|pool|executor|sessionmaker|redis|database|(?:^|_)db(?:_|$)|data_layer",
    re.IGNORECASE,
)
_SAFE_WORDS = re.compile(r"settings|config|options|logger|version|pattern|regex", re.IGNORECASE)
_FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef)
_NESTED_BODIES = (ast.If, ast.Try, ast.TryStar, ast.With, ast.AsyncWith, ast.For, ast.While)

_Func = ast.FunctionDef | ast.AsyncFunctionDef


def _dotted(node: ast.expr) -> str | None:
    """``a.b.c`` for a chain of attributes on a name, else None."""
    parts: list[str] = []
    while type(node) is ast.Attribute:
        parts.append(node.attr)
        node = node.value
    if type(node) is ast.Name:
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


def _last(dotted: str) -> str:
    return dotted.rpartition(".")[2]


def _params(fn: _Func, *, skip_first: bool) -> tuple[str, ...]:
    args = fn.args
    names = [a.arg for a in (*args.posonlyargs, *args.args)]
    if skip_first:
        names = names[1:]
    names.extend(a.arg for a in args.kwonlyargs)
    if args.vararg is not None:
        names.append(args.vararg.arg)
    if args.kwarg is not None:
        names.append(args.kwarg.arg)
    return tuple(names)


def _store_names(target: ast.expr) -> Iterator[str]:
    if isinstance(target, ast.Name):
        yield target.id
    elif isinstance(target, ast.Tuple | ast.List):
        for element in target.elts:
            yield from _store_names(element)
    elif isinstance(target, ast.Starred):
        yield from _store_names(target.value)


def _none_test(test: ast.expr) -> ast.expr | None:
    """The tested expression of ``x is None`` / ``x == None`` / ``not x``."""
    if type(test) is ast.Compare and len(test.ops) == 1:
        right = test.comparators[0]
        if (
            type(test.ops[0]) in (ast.Is, ast.Eq)
            and type(right) is ast.Constant
            and right.value is None
        ):
            return test.left
    elif type(test) is ast.UnaryOp and type(test.op) is ast.Not:
        return test.operand
    return None


def _is_main_guard(test: ast.expr) -> bool:
    """``__name__ == "__main__"`` (either way round)."""
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1):
        return False
    sides = {ast.unparse(test.left), ast.unparse(test.comparators[0])}
    return isinstance(test.ops[0], ast.Eq) and sides in (
        {"__name__", "'__main__'"},
        {"__name__", '"__main__"'},
    )


def _is_reset_value(value: ast.expr) -> bool:
    """A constant or an empty container: assigning it resets a global, it creates nothing."""
    if isinstance(value, ast.Constant):
        return True
    if isinstance(value, ast.Dict):
        return not value.keys
    if isinstance(value, ast.List | ast.Set | ast.Tuple):
        return not value.elts
    if isinstance(value, ast.Call) and not value.args and not value.keywords:
        return _dotted(value.func) in ("dict", "list", "set", "tuple", "frozenset")
    return False


def _caches(method: _Func, class_name: str, class_attrs: list[str]) -> bool:
    """Whether an accessor keeps what it returns (a ``global``, ``cls.x``, a class attribute);
    an accessor that builds a new object on every call is a factory, not a singleton."""
    for node in ast.walk(method):
        if isinstance(node, ast.Global):
            return True
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in ("cls", class_name)
            and (isinstance(node.ctx, ast.Store) or node.attr in class_attrs)
        ):
            return True
    return False


def _annotation_name(node: ast.expr | None) -> str | None:
    if node is None:
        return None
    if isinstance(node, ast.Constant):
        if node.value is None:
            return "None"
        if not isinstance(node.value, str):
            return None
        try:  # a string annotation: "AgentFactory", "tuple[str, ...]"
            node = ast.parse(node.value, mode="eval").body
        except SyntaxError:
            return None
    if isinstance(node, ast.Subscript):  # tuple[str, ...], type[Model]
        node = node.value
    dotted = _dotted(node)
    return _last(dotted) if dotted else None


@dataclass(slots=True)
class _Scope:
    kind: str  # "module", "class" or "function"
    qualname: str
    node: ast.AST | None = None
    params: frozenset[str] = frozenset()
    globals_: set[str] = field(default_factory=set)
    # global name -> value assigned (None: an import, loop or with target: not a creation)
    assigned_globals: dict[str, ast.expr | None] = field(default_factory=dict)
    locals_: frozenset[str] | None = None

    def child(self, name: str) -> str:
        return f"{self.qualname}.{name}" if self.qualname else name


@dataclass(slots=True)
class _Raw:
    """A finding before its severity is judged (needs every class of the tree)."""

    line: int
    col: int  # col_offset in UTF-8 bytes
    code: str
    message: str
    symbol: str
    severity: str = ""
    advice: str = ""
    refs: tuple[str, ...] = ()  # import-resolved classes/factories to judge ("" = unknown)
    target: str = ""  # name the object is bound to, for the advice
    floor: str | None = None  # severity when the judge finds nothing (None: drop)
    snippet: str = ""
    context: str = ""


class _FileScanner:
    """Finds every rule's pattern in one parsed module."""

    def __init__(
        self, tree: ast.Module, source: str, config: AuditConfig, module: str = ""
    ) -> None:
        self.tree = tree
        self.source = source
        self.config = config
        self.module = module
        self.infos: list[ClassInfo] = []
        self.function_nodes: dict[str, _Func] = {}
        self.lines: list[str] | None = None
        # module-level `XImpl = get_impl(X, ...)` / `A = X`
        self.aliases: dict[str, str] = {}
        # (module as imported, container, function, key) of keyed writes to other modules
        self.foreign: list[tuple[str, str, str, str]] = []
        self.reported_globals: set[str] = set()
        self.disabled = config.disable
        self.raw: list[_Raw] = []
        self.imports: dict[str, str] = {}
        self.classes: dict[str, tuple[str, ...]] = {}
        self.functions: dict[str, tuple[str, ...]] = {}
        self.module_names: set[str] = set()
        self.containers: dict[str, ast.stmt] = {}
        # container -> (function, identity key; "" when only its name is user-ish)
        self.mutations: dict[str, tuple[str, str | None]] = {}
        self.target: str | None = None
        self.accessors_bare: dict[str, str] = {}
        self.accessors_dotted: dict[str, str] = {}
        for name, hint in config.deprecated_accessors.items():
            if _last(name) in source:
                (self.accessors_dotted if "." in name else self.accessors_bare)[name] = hint
        self.check_providers = "US005" not in self.disabled and (
            "Singleton" in source or "Resource" in source
        )
        self.needs_calls = False
        self.candidates: list[int] = []

    # -- driver -------------------------------------------------------------------

    def run(self) -> list[_Raw]:
        self._collect(self.tree.body)
        if "US006" in self.disabled:
            self.containers.clear()
        if "US007" in self.disabled:
            self.accessors_bare.clear()
            self.accessors_dotted.clear()
        self.candidates = self._candidate_lines()
        self.needs_calls = bool(self.candidates)
        self._stmts(self.tree.body, _Scope("module", ""))
        self._emit_containers()
        return self.raw

    def _candidate_lines(self) -> list[int]:
        """Sorted lines holding a name some call check cares about.

        Expressions spanning none of these lines cannot contain a relevant call,
        so they are skipped without walking them (most expressions in a file).
        """
        tokens: set[str] = set(self.containers)
        if self.check_providers:
            tokens.update(_SINGLETON_PROVIDERS)
        tokens.update(_last(name) for name in (*self.accessors_bare, *self.accessors_dotted))
        if not tokens:
            return []
        if self.check_providers or self.accessors_bare or self.accessors_dotted:
            # aliases (`import x as y`, possibly inside a function) may rename a target
            tokens.update(_AS_NAME.findall(self.source))
            tokens.update(a for a, full in self.imports.items() if _last(full) in tokens)
        pattern = re.compile(r"\b(?:" + "|".join(map(re.escape, sorted(tokens))) + r")\b")
        lines: list[int] = []
        text = self.source
        line = 1
        position = 0
        for match in pattern.finditer(text):
            start = match.start()
            line += text.count("\n", position, start)
            position = start
            if not lines or lines[-1] != line:
                lines.append(line)
        return lines

    def _add(
        self,
        code: str,
        node: ast.AST | int,
        message: str,
        symbol: str,
        *,
        severity: str = "",
        advice: str = "",
        refs: tuple[str, ...] = (),
        target: str = "",
        floor: str | None = None,
    ) -> None:
        if code not in self.disabled:
            if isinstance(node, int):
                line, col = node, 0
            else:
                line = getattr(node, "lineno", 1)
                col = getattr(node, "col_offset", 0)
            self.raw.append(
                _Raw(line, col, code, message, symbol, severity, advice, refs, target, floor)
            )

    # -- pass 1: module-level names ---------------------------------------------

    def _collect(self, body: list[ast.stmt]) -> None:
        for stmt in body:
            if isinstance(stmt, ast.ClassDef):
                self.classes[stmt.name] = self._ctor_params(stmt)
                self.module_names.add(stmt.name)
            elif isinstance(stmt, _FUNCTIONS):
                self.functions[stmt.name] = _params(stmt, skip_first=False)
                self.function_nodes[stmt.name] = stmt
                self.module_names.add(stmt.name)
            elif isinstance(stmt, ast.Import | ast.ImportFrom):
                self._import(stmt)
            elif isinstance(stmt, ast.Assign | ast.AnnAssign):
                value = stmt.value
                targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
                is_container = value is not None and self._is_container(value)
                if (
                    len(targets) == 1
                    and type(targets[0]) is ast.Name
                    and targets[0].id[:1].isupper()
                ):
                    aliased = value
                    if type(aliased) is ast.Call and aliased.args:
                        aliased = aliased.args[0]
                    dotted = _dotted(aliased) if aliased is not None else None
                    if dotted and _last(dotted)[:1].isupper() and dotted != targets[0].id:
                        self.aliases[targets[0].id] = self._resolve(dotted)
                for target in targets:
                    for name in _store_names(target):
                        self.module_names.add(name)
                        if is_container and isinstance(target, ast.Name):
                            self.containers[name] = stmt
            elif isinstance(stmt, _NESTED_BODIES):
                for attr in ("body", "orelse", "finalbody"):
                    self._collect(getattr(stmt, attr, []))
                for handler in getattr(stmt, "handlers", []):
                    self._collect(handler.body)

    def _ctor_params(self, cls: ast.ClassDef) -> tuple[str, ...]:
        fields: list[str] = []
        for stmt in cls.body:
            if isinstance(stmt, _FUNCTIONS) and stmt.name == "__init__":
                return _params(stmt, skip_first=True)
            if (
                isinstance(stmt, ast.AnnAssign)
                and isinstance(stmt.target, ast.Name)
                and "ClassVar" not in ast.unparse(stmt.annotation)
            ):
                fields.append(stmt.target.id)
        return tuple(fields)

    def _is_container(self, value: ast.expr) -> bool:
        if isinstance(value, CONTAINER_LITERALS):
            return True
        if type(value) is ast.Call:
            dotted = _dotted(value.func)
            return dotted is not None and _last(dotted) in CONTAINER_FACTORIES
        return False

    def _import(self, stmt: ast.Import | ast.ImportFrom) -> None:
        if type(stmt) is ast.Import:
            for alias in stmt.names:
                if alias.asname:
                    self.imports[alias.asname] = alias.name
                else:
                    head = alias.name.partition(".")[0]
                    self.imports[head] = head
        else:
            assert isinstance(stmt, ast.ImportFrom)
            prefix = "." * stmt.level + (stmt.module or "")
            for alias in stmt.names:
                if alias.name != "*":
                    full = f"{prefix}.{alias.name}" if stmt.module else f"{prefix}{alias.name}"
                    self.imports[alias.asname or alias.name] = full

    def _resolve(self, dotted: str) -> str:
        head, sep, rest = dotted.partition(".")
        base = self.imports.get(head)
        return f"{base}{sep}{rest}" if base else dotted

    # -- pass 2: statements --------------------------------------------------------

    def _stmts(self, body: list[ast.stmt], scope: _Scope) -> None:
        for stmt in body:
            self._stmt(stmt, scope)

    def _stmt(self, stmt: ast.stmt, scope: _Scope) -> None:
        if isinstance(stmt, ast.Expr | ast.Return):
            if stmt.value is not None:
                self._expr(stmt.value, scope)
        elif isinstance(stmt, ast.Assign):
            self._assign(stmt, stmt.targets, stmt.value, scope)
        elif isinstance(stmt, _FUNCTIONS):
            self._function(stmt, scope)
        elif isinstance(stmt, ast.If):
            self._if(stmt, scope)
        elif isinstance(stmt, ast.ClassDef):
            self._class(stmt, scope)
        elif isinstance(stmt, ast.AnnAssign):
            if stmt.value is not None:
                self._assign(stmt, [stmt.target], stmt.value, scope)
        elif isinstance(stmt, ast.AugAssign):
            self._assign(stmt, [stmt.target], stmt.value, scope, aug=True)
        elif isinstance(stmt, ast.Global):
            if scope.kind == "function":
                scope.globals_.update(stmt.names)
        elif isinstance(stmt, ast.Import | ast.ImportFrom):
            self._import(stmt)
            if scope.kind == "function":
                bound = [(a.asname or a.name).partition(".")[0] for a in stmt.names]
                self._note_store(bound, scope, None)  # a lazy-import holder
        elif isinstance(stmt, ast.Delete):
            for target in stmt.targets:
                self._subscript_mutation(target, scope)
                self._expr(target, scope)
        elif not isinstance(stmt, ast.Pass | ast.Break | ast.Continue):
            self._generic(stmt, scope)

    def _generic(self, stmt: ast.stmt, scope: _Scope) -> None:
        if isinstance(stmt, ast.For | ast.AsyncFor):
            self._note_store(list(_store_names(stmt.target)), scope)
        for _, value in ast.iter_fields(stmt):
            if isinstance(value, list):
                for item in value:
                    if isinstance(item, ast.stmt):
                        self._stmt(item, scope)
                    elif isinstance(item, ast.expr):
                        self._expr(item, scope)
                    elif isinstance(item, ast.withitem):
                        self._expr(item.context_expr, scope)
                        if item.optional_vars is not None:
                            self._note_store(list(_store_names(item.optional_vars)), scope)
                    elif isinstance(item, ast.ExceptHandler):
                        if item.type is not None:
                            self._expr(item.type, scope)
                        if item.name:
                            self._note_store([item.name], scope)
                        self._stmts(item.body, scope)
                    elif isinstance(item, ast.match_case):
                        if item.guard is not None:
                            self._expr(item.guard, scope)
                        self._stmts(item.body, scope)
            elif isinstance(value, ast.expr):
                self._expr(value, scope)

    def _note_store(self, names: list[str], scope: _Scope, value: ast.expr | None = None) -> None:
        """Record assignments to ``global`` names (constants and ``+=`` are resets/counters)."""
        if scope.kind == "function" and scope.globals_:
            for name in names:
                if name in scope.globals_ and scope.assigned_globals.get(name) is None:
                    scope.assigned_globals[name] = value

    def _assign(
        self,
        stmt: ast.stmt,
        targets: list[ast.expr],
        value: ast.expr,
        scope: _Scope,
        *,
        aug: bool = False,
    ) -> None:
        names = [name for target in targets for name in _store_names(target)]
        if scope.kind == "function":
            if not aug and not _is_reset_value(value):
                self._note_store(names, scope, value)
            for target in targets:
                self._subscript_mutation(target, scope)
        elif scope.kind == "module" and not aug and isinstance(value, ast.Call):
            shown = names or [d for d in map(_dotted, targets) if d]  # Logger.manager = ...
            self._module_instance(stmt, shown, value)
        if not self.needs_calls:
            return
        if names:
            self.target = names[0]
        elif type(targets[0]) is ast.Attribute:
            self.target = _dotted(targets[0])
        self._expr(value, scope)
        self.target = None

    def _module_instance(self, stmt: ast.stmt, names: list[str], value: ast.Call) -> None:
        dotted = _dotted(value.func)
        if dotted is None:
            return
        head, _, method = dotted.rpartition(".")
        if head and method in _INSTANCE_ACCESSORS:  # Cls.get_instance(...)
            dotted = head
        ref: str | None = None
        if dotted in self.aliases:  # XImpl = get_impl(X, ...); x = XImpl.get_instance()
            ref = dotted = self.aliases[dotted]  # already import-resolved
        elif dotted in self.module_names and dotted not in self.classes:
            return  # a factory function or a type alias of this module
        cls = _last(dotted)
        if not cls[:1].isupper():
            return
        shown = ", ".join(f"`{n}`" for n in names) or "an object"
        self._add(
            "US001",
            stmt,
            f"module-level {shown} is one `{cls}` shared by every user and request",
            ",".join(names) or cls,
            refs=(ref or self._resolve(dotted),),
            target=names[0].rpartition(".")[2] if names else "",
        )

    def _creation(self, value: ast.expr, fn: _Func | None, depth: int = 0) -> str | None:
        """What assigning ``value`` to a global creates: a class/factory reference to
        judge, ``""`` for an unknown object, or None when it creates nothing shared
        (a setter's parameter, a logger, a compiled regex, an import, plain data)."""
        if type(value) is ast.Await:
            value = value.value
        kind = type(value)
        if kind is ast.Call:
            assert isinstance(value, ast.Call)
            dotted = _dotted(value.func)
            if dotted is None:
                return ""
            head, _, method = dotted.rpartition(".")
            if head and (method in _INSTANCE_ACCESSORS or _last(head)[:1].isupper()):
                dotted = head  # Cls.get_instance(), Settings.from_env(): judge the class
            name = _last(dotted)
            if (
                name in _EXEMPT_CALLS
                or name in _IMMUTABLE_RESULTS
                or self.config.is_safe(name)
                or (not name[:1].isupper() and _SAFE_WORDS.search(name) is not None)
            ):
                return None
            local = self.function_nodes.get(dotted)
            if local is not None and local is not fn and depth < 3:
                # a factory of this module: judge what it returns
                returned = [
                    node.value
                    for node in ast.walk(local)
                    if type(node) is ast.Return and node.value is not None
                ]
                made = [self._creation(r, local, depth + 1) for r in returned]
                kept = [m for m in made if m is not None]
                if returned and not kept:
                    return None
                if kept and any(kept):
                    return next(m for m in kept if m)
            return self._resolve(dotted)
        if kind is ast.Name:
            assert isinstance(value, ast.Name)
            if fn is None:
                return None
            if value.id in _params(fn, skip_first=False):
                return None  # a setter
            for node in ast.walk(fn):
                if (
                    type(node) is ast.Assign
                    and any(type(t) is ast.Name and t.id == value.id for t in node.targets)
                    and node.value is not value
                ):
                    return self._creation(node.value, None, depth + 1)
            return None
        if isinstance(value, ast.Dict | ast.List | ast.Set | ast.Tuple | ast.BoolOp | ast.IfExp):
            calls = [node for node in ast.walk(value) if type(node) is ast.Call]
            if not calls:
                return None  # a table of constants, names or exception classes
            found = [self._creation(call, fn, depth + 1) for call in calls]
            kept = [f for f in found if f is not None]
            return kept[0] if kept else None
        return None

    def _function(self, fn: _Func, scope: _Scope) -> None:
        qualname = scope.child(fn.name)
        if "US004" not in self.disabled and fn.decorator_list:
            self._cached_factory(fn, qualname)
        if self.needs_calls:
            for decorator in fn.decorator_list:
                self._expr(decorator, scope)
            for default in (*fn.args.defaults, *fn.args.kw_defaults):
                if default is not None:
                    self._expr(default, scope)
        inner = _Scope("function", qualname, fn, params=frozenset(_params(fn, skip_first=False)))
        self._stmts(fn.body, inner)
        if inner.assigned_globals and "US002" not in self.disabled:
            created: dict[str, str] = {}
            for name, value in inner.assigned_globals.items():
                if value is None or name in self.reported_globals:
                    continue
                ref = self._creation(value, fn)
                if ref is not None:
                    created[name] = ref
            if created:
                self.reported_globals.update(created)
                shown = ", ".join(f"`{name}`" for name in created)
                self._add(
                    "US002",
                    fn,
                    f"`{fn.name}()` assigns module global {shown} at run time: one object "
                    "shared by every user and request",
                    qualname,
                    refs=tuple(created.values()),
                    target=next(iter(created)).lstrip("_"),
                    floor="warning",
                )

    def _cached_factory(self, fn: _Func, qualname: str) -> None:
        args = fn.args
        if args.posonlyargs or args.args or args.kwonlyargs or args.vararg or args.kwarg:
            return
        for decorator in fn.decorator_list:
            target = decorator.func if type(decorator) is ast.Call else decorator
            dotted = _dotted(target)
            if dotted is None:
                continue
            if dotted != "lru_cache" and self._resolve(dotted) not in _CACHE_DECORATORS:
                continue
            refs = self._returned(fn)
            if refs is None:
                return
            self._add(
                "US004",
                fn,
                f"`{fn.name}()` takes no arguments and is cached with `@{dotted}`: its result "
                "is a process-wide singleton",
                qualname,
                refs=refs,
                target=fn.name.removeprefix("get_").lstrip("_"),
                floor="warning",
            )
            return

    def _returned(self, fn: _Func) -> tuple[str, ...] | None:
        """References to judge for what ``fn`` returns; None when it is safe to cache."""
        name = _annotation_name(fn.returns)
        if name is not None and (
            name in _IMMUTABLE_RESULTS
            or name in _EXEMPT_CALLS
            or self.config.is_safe(name)
            or name in ("Logger", "Engine", "AsyncEngine")
        ):
            return None
        if name is not None and not name[:1].isupper():
            name = None  # dict[str, str], list[...]: judged by what is returned
        returned = [node.value for node in ast.walk(fn) if type(node) is ast.Return and node.value]
        refs: list[str] = []
        for value in returned:
            ref = self._creation(value, fn)
            if ref is not None:
                refs.append(ref)
        if name is None and not refs:
            return None
        if name is not None and fn.returns is not None:
            refs.insert(0, self._resolve(_dotted(fn.returns) or name))
        return tuple(refs)

    def _class(self, cls: ast.ClassDef, scope: _Scope) -> None:
        qualname = scope.child(cls.name)
        if self.lines is None:
            self.lines = self.source.splitlines()
        info = analyze_class(cls, self.module, self.config, self._resolve, self.lines)
        self.infos.append(info)
        if "US003" not in self.disabled:
            evidence = self._singleton_evidence(cls)
            refs: tuple[str, ...] = (cls.name,)
            if evidence is None and info.class_held:
                attr, method, _, ref = info.class_held[0]
                evidence = f"`cls.{attr}` cached by `{method}()`"
                refs = (ref, cls.name) if ref else refs
            if evidence:
                self._add(
                    "US003",
                    cls,
                    f"class `{cls.name}` is a singleton ({evidence}): every user gets the "
                    "same instance",
                    qualname,
                    refs=refs,
                    target="",
                    floor="note",
                )
        if "US008" not in self.disabled:
            for attr, line, found in info.class_keyed:
                scope_name = scope_for(found.key)
                self._add(
                    "US008",
                    line,
                    f"class-level `{cls.name}.{attr}` is keyed by `{found.key}` and shared "
                    f"by every instance and user ({found.text})",
                    f"{qualname}.{attr}",
                    severity="error",
                    advice=(
                        f"make the per-user object scoped (`{scope_name}(...)`) so each "
                        f"{'user' if scope_name == 'UserScoped' else 'scope'} has its own; "
                        f"`{cls.name}.{attr}` and its `{found.key}` key then go away"
                    ),
                )
        if self.needs_calls:
            for expr in (*cls.bases, *(k.value for k in cls.keywords), *cls.decorator_list):
                self._expr(expr, scope)
        self._stmts(cls.body, _Scope("class", qualname, cls))

    def _singleton_evidence(self, cls: ast.ClassDef) -> str | None:
        attrs: list[str] = []
        methods: dict[str, _Func] = {}
        for stmt in cls.body:
            if isinstance(stmt, ast.Assign):
                attrs.extend(n for t in stmt.targets for n in _store_names(t))
            elif isinstance(stmt, ast.AnnAssign):
                attrs.extend(_store_names(stmt.target))
            elif isinstance(stmt, _FUNCTIONS):
                methods[stmt.name] = stmt
        instance_attrs = [a for a in attrs if _INSTANCE_ATTR.match(a)]
        if "__new__" in methods:
            if instance_attrs:
                return f"`{instance_attrs[0]}` + `__new__`"
            for node in ast.walk(methods["__new__"]):
                if (
                    isinstance(node, ast.Attribute)
                    and _INSTANCE_ATTR.match(node.attr)
                    and node.attr not in methods  # cls._new_instance(key) is a factory call
                ):
                    return f"`{node.attr}` + `__new__`"
        if "__call__" in methods and instance_attrs:
            bases = {_dotted(b) for b in cls.bases}
            if "type" in bases or "ABCMeta" in bases:
                return f"metaclass caching `{instance_attrs[0]}`"
        for name in _INSTANCE_ACCESSORS:
            method = methods.get(name)
            if (
                method is not None
                and any(
                    _dotted(d) in ("classmethod", "staticmethod") for d in method.decorator_list
                )
                and _caches(method, cls.name, attrs)
            ):
                return f"`{name}()` class accessor"
        for keyword in cls.keywords:
            if keyword.arg == "metaclass":
                dotted = _dotted(keyword.value)
                if dotted and "singleton" in dotted.lower():
                    return f"metaclass `{dotted}`"
        for decorator in cls.decorator_list:
            target = decorator.func if type(decorator) is ast.Call else decorator
            dotted = _dotted(target)
            if dotted and "singleton" in _last(dotted).lower():
                return f"`@{dotted}` decorator"
        return None

    def _if(self, stmt: ast.If, scope: _Scope) -> None:
        if "US002" not in self.disabled:
            tested = _none_test(stmt.test)
            if tested is not None:
                self._lazy_if(stmt, tested, scope)
        self._expr(stmt.test, scope)
        if scope.kind == "module" and _is_main_guard(stmt.test):
            # script code: runs once per `python module.py`, never per request
            self._stmts(stmt.body, _Scope("script", "<main>"))
        else:
            self._stmts(stmt.body, scope)
        self._stmts(stmt.orelse, scope)

    def _lazy_if(self, stmt: ast.If, tested: ast.expr, scope: _Scope) -> None:
        if scope.kind == "module" and type(tested) is ast.Name:
            name = tested.id
            for inner in stmt.body:
                if isinstance(inner, ast.Assign) and name in {
                    n for t in inner.targets for n in _store_names(t)
                }:
                    ref = self._creation(inner.value, None)
                    if ref is None or name in self.reported_globals:
                        return
                    self.reported_globals.add(name)
                    self._add(
                        "US002",
                        stmt,
                        f"module-level `if {name} is None: {name} = ...` lazily creates one "
                        f"shared `{name}`",
                        name,
                        refs=(ref,),
                        target=name.lstrip("_"),
                        floor="warning",
                    )
                    return
        elif (
            scope.kind == "function"
            and type(tested) is ast.Attribute
            and type(tested.value) is ast.Name
        ):
            holder = tested.value.id
            if (
                holder in ("self", "cls")
                or holder not in self.module_names
                or self.config.is_safe(holder)  # Settings.defaults = ...: settings
                or holder in scope.params
                or self._is_local(holder, scope)
            ):
                return
            wanted = f"{holder}.{tested.attr}"
            for inner in stmt.body:
                if isinstance(inner, ast.Assign) and any(
                    _dotted(t) == wanted for t in inner.targets
                ):
                    fn = scope.node if isinstance(scope.node, _FUNCTIONS) else None
                    ref = self._creation(inner.value, fn)
                    if ref is None:
                        return
                    self._add(
                        "US002",
                        stmt,
                        f"`{_last(scope.qualname)}()` lazily sets `{wanted}` on a module-level "
                        "object: one instance ends up shared by every user",
                        f"{scope.qualname}:{wanted}",
                        refs=(ref,),
                        target=tested.attr.lstrip("_"),
                        floor="warning",
                    )
                    return

    # -- expressions -------------------------------------------------------------

    def _expr(self, expr: ast.expr, scope: _Scope) -> None:
        if not self.needs_calls:
            return
        candidates = self.candidates
        index = bisect_left(candidates, expr.lineno)
        if index == len(candidates) or candidates[index] > (expr.end_lineno or expr.lineno):
            return
        for node in ast.walk(expr):
            if type(node) is ast.Call:
                self._call(node, scope)

    def _call(self, call: ast.Call, scope: _Scope) -> None:
        func = call.func
        if (
            self.containers
            and scope.kind == "function"
            and isinstance(func, ast.Attribute)
            and func.attr in _MUTATORS
        ):
            self._mutator_call(call, func, scope)
        dotted = _dotted(func)
        if dotted is None:
            return
        if self.check_providers:
            kind = _last(self._resolve(dotted))
            if kind in _SINGLETON_PROVIDERS:
                self._provider(call, dotted, kind, scope)
        if self.accessors_bare or self.accessors_dotted:
            self._deprecated(call, dotted, scope)

    def _mutator_call(self, call: ast.Call, func: ast.Attribute, scope: _Scope) -> None:
        owner = func.value
        key: ast.expr | None = None
        if isinstance(owner, ast.Subscript):  # _histories[user_id].append(...)
            key = owner.slice
            owner = owner.value
        if (
            isinstance(owner, ast.Name)
            and owner.id in self.containers
            and not self._is_local(owner.id, scope)
        ):
            candidates = [key] if key is not None else []
            candidates += [*call.args, *(kw.value for kw in call.keywords)]
            found = next((k for k in map(self._identity_key, candidates) if k), None)
            self._record_mutation(owner.id, scope, found)

    def _provider(self, call: ast.Call, dotted: str, kind: str, scope: _Scope) -> None:
        resolved = self._resolve(dotted)
        if not (resolved.startswith("dependency_injector.") or dotted.startswith("providers.")):
            return
        if not call.args:
            return
        provided = _dotted(call.args[0])
        if provided is None:
            return
        name = _last(provided)
        if self.config.is_safe(name):
            return
        params = self.classes.get(name) or self.functions.get(name) or ()
        user_params = [p for p in params if self.config.is_user_name(p)]
        user_kwargs = [k.arg for k in call.keywords if k.arg and self.config.is_user_name(k.arg)]
        if user_params:
            reason = f"its constructor takes `{user_params[0]}`"
        elif user_kwargs:
            reason = f"it is built with `{user_kwargs[0]}=`"
        elif name[:1].isupper() and self.config.is_stateful(name):
            reason = "its name marks it as stateful"
        else:
            return
        where = scope.child(self.target) if self.target else f"{scope.qualname}:{name}"
        self._add(
            "US005",
            call,
            f"`{kind}({name})` shares one per-user `{name}` across every user ({reason})",
            where,
        )

    def _deprecated(self, call: ast.Call, dotted: str, scope: _Scope) -> None:
        resolved = self._resolve(dotted)
        for entry in self.accessors_dotted:
            if resolved == entry or dotted == entry or resolved.endswith("." + entry):
                hint = self.accessors_dotted[entry]
                break
        else:
            last = _last(resolved)
            entry = last if last in self.accessors_bare else _last(dotted)
            if entry not in self.accessors_bare:
                return
            hint = self.accessors_bare[entry]
        message = f"call to deprecated accessor `{entry}()`"
        if hint:
            message += f": {hint}"
        self._add("US007", call, message, f"{scope.qualname or '<module>'}>{entry}")

    def _mentions_user(self, expr: ast.expr) -> bool:
        return self._identity_key(expr) is not None

    def _identity_key(self, expr: ast.expr) -> str | None:
        """The first identity key named in ``expr`` (``user_id``, ``ctx.thread_id``)."""
        is_user = self.config.is_user_name
        for node in ast.walk(expr):
            if isinstance(node, ast.Name) and is_user(node.id):
                return node.id
            if isinstance(node, ast.Attribute) and is_user(node.attr):
                return node.attr
        return None

    def _is_local(self, name: str, scope: _Scope) -> bool:
        if scope.kind != "function" or name in scope.globals_:
            return False
        if name in scope.params:
            return True
        if scope.locals_ is None:
            assert scope.node is not None
            scope.locals_ = frozenset(
                node.id
                for node in ast.walk(scope.node)
                if type(node) is ast.Name and type(node.ctx) is ast.Store
            )
        return name in scope.locals_

    def _subscript_mutation(self, target: ast.expr, scope: _Scope) -> None:
        if scope.kind != "function" or type(target) is not ast.Subscript:
            return
        keys: list[ast.expr] = []
        node: ast.expr = target
        while isinstance(node, ast.Subscript):  # _sessions[user_id]["history"] = ...
            keys.append(node.slice)
            node = node.value
        if (
            type(node) is ast.Attribute
            and type(node.value) is ast.Name
            and node.value.id in self.imports
            and "US006" not in self.disabled
            and any(self._mentions_user(key) for key in keys)
            and not self._is_local(node.value.id, scope)
        ):  # state.query_cache[user.uuid][key] = ...: a container of another module
            found = next((k for k in map(self._identity_key, keys) if k), "")
            self.foreign.append((self.imports[node.value.id], node.attr, scope.qualname, found))
            return
        if not self.containers:
            return
        if (
            keys
            and isinstance(node, ast.Name)
            and node.id in self.containers
            and not self._is_local(node.id, scope)
        ):
            hit = next((k for k in map(self._identity_key, keys) if k), None)
            self._record_mutation(node.id, scope, hit)

    def _record_mutation(self, name: str, scope: _Scope, key: str | None) -> None:
        if key is None and _USERISH_NAME.search(name) is not None:
            key = ""  # `_user_sessions[...]`: the name says whose entries these are
        previous = self.mutations.get(name)
        if previous is None or (key is not None and previous[1] is None):
            self.mutations[name] = (scope.qualname, key)

    def _emit_containers(self) -> None:
        for name, (function, key) in self.mutations.items():
            if key is not None:
                self._add(
                    "US006",
                    self.containers[name],
                    container_message(name, function, key),
                    name,
                    advice=container_advice(key),
                )


def container_message(name: str, function: str, key: str) -> str:
    """The US006 message."""
    keyed = f"is keyed by `{key}`" if key else "holds per-user entries"
    return (
        f"module-level container `{name}` {keyed} and is mutated in "
        f"`{function}()`: every user's entries live in one process-wide map"
    )


def container_advice(key: str) -> str:
    """The US006 fix, naming the scope that fits the key."""
    scope = scope_for(key) if key else "UserScoped"
    who = {"UserScoped": "user", "ConnectionScoped": "connection"}.get(scope, "request")
    return (
        f"keep these entries on an object declared `{scope}(...)` in your container and "
        f"resolved inside a scope: each {who} gets its own, and scope exit drops it, "
        "instead of a process-wide map that leaks between users"
    )


# -- files, comments and columns ----------------------------------------------------


_FILE = "*file*"  # key of file-level ignores in the map returned by _ignores


def _ignores(source: str) -> dict[int | str, frozenset[str] | None]:
    """Line (or ``_FILE``) -> codes silenced there (None = every code)."""
    found: dict[int | str, frozenset[str] | None] = {}
    try:
        for token in tokenize.generate_tokens(io.StringIO(source).readline):
            if token.type == tokenize.COMMENT:
                match = _IGNORE.search(token.string)
                if match:
                    codes = match.group(2)
                    where: int | str = _FILE if match.group(1) else token.start[0]
                    if codes is None or not codes.strip():
                        found[where] = None
                    elif found.get(where, frozenset()) is not None:
                        parsed = frozenset(c.strip().upper() for c in codes.split(",") if c.strip())
                        found[where] = (found.get(where) or frozenset()) | parsed
    except (tokenize.TokenError, SyntaxError):
        pass
    return found


def _char_col(lines: list[str], line: int, col_offset: int) -> int:
    """1-based character column from a UTF-8 byte offset."""
    if 0 < line <= len(lines):
        text = lines[line - 1]
        if not text.isascii():
            return len(text.encode("utf-8")[:col_offset].decode("utf-8", "replace")) + 1
    return col_offset + 1


def _count_lines(text: str) -> int:
    return text.count("\n") + (1 if text and not text.endswith("\n") else 0)


def _unparsable(path: str, line: int, col: int, message: str) -> Finding:
    return Finding(path, max(line, 1), max(col, 1), "US000", message, "", 0)


def _normalise(text: str) -> str:
    return " ".join(text.split())


def _neighbours(lines: list[str], line: int) -> str:
    """Digest of the nearest non-blank lines above and below ``line``."""
    above = below = ""
    for index in range(line - 2, -1, -1):
        if lines[index].strip():
            above = _normalise(lines[index])
            break
    for index in range(line, len(lines)):
        if lines[index].strip():
            below = _normalise(lines[index])
            break
    return hashlib.sha256(f"{above}\x1f{below}".encode()).hexdigest()[:16]


@dataclass(slots=True)
class _FileResult:
    """One file after the walk, before its findings are judged against the whole tree."""

    path: str
    module: str
    lines: int
    early: list[Finding]  # findings that need no judging (US000)
    raw: list[_Raw]
    infos: list[ClassInfo]
    silenced: dict[int | str, frozenset[str] | None]
    containers: dict[str, _Raw] = field(default_factory=dict)  # not (yet) reported
    text: str = ""  # kept while findings may still be added (snippets, columns)
    foreign: list[tuple[str, str, str, str]] = field(default_factory=list)


def _module_name(path: str) -> str:
    parts = list(PurePath(os.path.abspath(path)).with_suffix("").parts[1:])
    if parts and parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _scan_text(data: str | bytes, path: str, config: AuditConfig, module: str) -> _FileResult:
    """Read, parse and walk one file."""
    result = _FileResult(path, module, 0, [], [], [], {})
    try:
        text = importlib.util.decode_source(data) if isinstance(data, bytes) else data
    except (UnicodeDecodeError, SyntaxError, LookupError) as err:
        if "US000" not in config.disable:
            result.early.append(_unparsable(path, 1, 1, f"could not decode file: {err}"))
        return result
    result.lines = _count_lines(text)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = ast.parse(text, filename=path)
    except SyntaxError as err:
        if "US000" not in config.disable:
            message = f"could not parse file: {err.msg}"
            result.early.append(_unparsable(path, err.lineno or 1, err.offset or 1, message))
        return result
    except (ValueError, RecursionError, MemoryError) as err:
        if "US000" not in config.disable:
            result.early.append(_unparsable(path, 1, 1, f"could not parse file: {err}"))
        return result
    try:
        scanner = _FileScanner(tree, text, config, module)
        raw = scanner.run()
    except RecursionError:
        if "US000" not in config.disable:
            result.early.append(_unparsable(path, 1, 1, "too deeply nested to audit"))
        return result
    result.infos = scanner.infos
    result.foreign = scanner.foreign
    reported = {item.symbol for item in raw if item.code == "US006"}
    for name, stmt in scanner.containers.items():
        if name not in reported:
            result.containers[name] = _Raw(stmt.lineno, stmt.col_offset, "US006", "", name)
    if not raw and not result.containers:
        return result
    result.text = text
    result.raw = raw
    if "userscope" in text:
        result.silenced = _ignores(text)
    return result


def _cross_module_containers(results: list[_FileResult]) -> None:
    """Report module-level containers written with an identity key from other modules."""
    writes = [(result, write) for result in results for write in result.foreign]
    if not writes:
        return
    by_name: dict[str, list[_FileResult]] = {}
    for result in results:
        for name in result.containers:
            by_name.setdefault(name, []).append(result)
    for writer, (imported, attr, function, key) in writes:
        owners = by_name.get(attr)
        if not owners:
            continue
        wanted = absolute_module(imported, writer.module)
        for owner in owners:
            if attr in owner.containers and ("." + owner.module).endswith("." + wanted):
                item = owner.containers.pop(attr)
                item.message = container_message(attr, function, key) + f" (in {writer.path})"
                item.advice = container_advice(key)
                owner.raw.append(item)
                break


def _finish(
    result: _FileResult, index: ClassIndex, config: AuditConfig
) -> tuple[list[Finding], int]:
    """Judge one file's raw findings, apply its ignore comments; (findings, ignored)."""
    findings: list[Finding] = list(result.early)
    seen: dict[tuple[str, str, str], int] = {}
    lines = result.text.splitlines()
    for item in result.raw:
        if 0 < item.line <= len(lines):
            item.snippet = _normalise(lines[item.line - 1])
            item.context = _neighbours(lines, item.line)
        item.col = _char_col(lines, item.line, item.col)
    for item in sorted(result.raw, key=lambda r: (r.line, r.col, r.code)):
        severity, advice, message = item.severity, item.advice, item.message
        if item.refs:
            verdicts = [
                judge(ref, result.module, item.target, index, config) for ref in item.refs if ref
            ]
            kept = [v for v in verdicts if v is not None]
            if kept:
                worst = min(kept, key=lambda v: ("error", "warning", "note").index(v.severity))
                severity, advice = worst.severity, worst.advice
                if worst.evidence:
                    message = f"{message}; it keeps {worst.evidence}"
            elif item.floor is None:
                continue
            else:
                severity = item.floor
                if _INFRA_TARGET.search(item.target) or all(
                    ref and _last(ref)[:1].isupper() for ref in item.refs
                ):
                    # infrastructure by its name, or a class that shows no state (stateless in
                    # the tree, or an unremarkable name outside it): shared by design
                    severity = "note"
                if severity == "note":
                    shown = f"`{item.target}`" if item.target else "the instance"
                    advice = f"keep {shown} process-wide; make sure it holds no per-user data"
        key = (item.code, item.symbol, item.snippet)
        occurrence = seen.get(key, 0)
        seen[key] = occurrence + 1
        findings.append(
            Finding(
                result.path,
                item.line,
                item.col,
                item.code,
                message,
                item.symbol,
                occurrence,
                severity,
                advice,
                item.snippet,
                item.context,
            )
        )
    ignored = 0
    silenced = result.silenced
    if silenced:
        whole = silenced.get(_FILE, frozenset())
        kept_findings = []
        for finding in findings:
            codes = silenced.get(finding.line, frozenset())
            if whole is None or finding.code in whole or codes is None or finding.code in codes:
                ignored += 1
            else:
                kept_findings.append(finding)
        findings = kept_findings
    return findings, ignored


def scan_source(
    source: str | bytes, path: str = "<string>", config: AuditConfig | None = None
) -> list[Finding]:
    """Audit one module given as text.

    Args:
        source: Python source (``bytes`` honour a PEP 263 coding cookie).
        path: Name used in the findings.
        config: Settings; the defaults when omitted.

    Returns:
        The findings left after ``# userscope: ignore`` comments, sorted. A
        source that does not parse yields a single ``US000`` finding.

    Example:
        >>> from userscope.audit import scan_source
        >>> [f.code for f in scan_source("bridge = AgentWebSocketBridge()\\n")]
        ['US001']
    """
    config = config or AuditConfig()
    result = _scan_text(source, path, config, _module_name(path))
    index = ClassIndex()
    for info in result.infos:
        index.add(info)
    findings, _ = _finish(result, index, config)
    return sorted(findings)


def _display(path: Path, cwd: Path) -> str:
    if path.is_absolute():
        try:
            return path.relative_to(cwd).as_posix()
        except ValueError:
            return path.as_posix()
    return path.as_posix()


def iter_python_files(
    paths: Iterable[str | os.PathLike[str]], config: AuditConfig
) -> Iterator[Path]:
    """Yield the Python files under ``paths`` that ``config`` does not exclude.

    Directories are walked recursively in sorted order (``*.py`` files only);
    files given explicitly are yielded whatever their suffix. Each file is
    yielded once.

    Args:
        paths: Files and directories.
        config: Supplies ``exclude``.

    Yields:
        File paths, as given or joined under the given directory.

    Raises:
        FileNotFoundError: If a path does not exist.

    Example:
        >>> from userscope.audit import iter_python_files
        >>> import tempfile
        >>> from userscope.audit import AuditConfig
        >>> list(iter_python_files([tempfile.mkdtemp()], AuditConfig()))
        []
    """
    seen: set[str] = set()
    for given in paths:
        root = Path(given)
        if not root.exists():
            raise FileNotFoundError(errno.ENOENT, "no such file or directory", str(given))
        if not root.is_dir():
            key = os.path.abspath(root)
            if (
                key not in seen
                and not config._excludes_name(root.name)
                and not config._excludes_path(root)
            ):
                seen.add(key)
                yield root
            continue
        for directory, dirnames, filenames in os.walk(root):
            base = Path(directory)
            dirnames[:] = sorted(
                d
                for d in dirnames
                if not config._excludes_name(d) and not config._excludes_path(base / d)
            )
            for filename in sorted(filenames):
                if not filename.endswith(".py") or config._excludes_name(filename):
                    continue
                candidate = base / filename
                key = os.path.abspath(candidate)
                if key in seen or config._excludes_path(candidate):
                    continue
                seen.add(key)
                yield candidate


def scan_paths(
    paths: Iterable[str | os.PathLike[str]], config: AuditConfig | None = None
) -> ScanResult:
    """Audit every Python file under ``paths``.

    Each file is read once, parsed once and walked once. Files that cannot be
    read, decoded or parsed are reported as ``US000`` findings; the run never
    stops on them.

    Args:
        paths: Files and directories to audit.
        config: Settings (see ``load_config``); the defaults when omitted.

    Returns:
        Sorted findings plus file and line counts.

    Raises:
        FileNotFoundError: If a path does not exist.

    Example:
        >>> import pathlib, tempfile
        >>> from userscope.audit import scan_paths
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (folder / "app.py").write_text("registry = AgentRegistry()\\n")
        >>> [f.code for f in scan_paths([folder]).findings]
        ['US001']
    """
    config = config or AuditConfig()
    cwd = Path.cwd()
    findings: list[Finding] = []
    files = lines = ignored = 0
    results: list[_FileResult] = []
    scanned: list[str] = []
    index = ClassIndex()
    for file in iter_python_files(paths, config):
        shown = _display(file, cwd)
        scanned.append(shown)
        files += 1
        try:
            data = file.read_bytes()
        except OSError as err:
            if "US000" not in config.disable:
                findings.append(_unparsable(shown, 1, 1, f"could not read file: {err.strerror}"))
            continue
        result = _scan_text(data, shown, config, _module_name(str(file)))
        lines += result.lines
        for info in result.infos:
            index.add(info)
        results.append(result)
    _cross_module_containers(results)
    for result in results:
        if not (result.raw or result.early):
            continue
        found, silenced = _finish(result, index, config)
        findings.extend(found)
        ignored += silenced
    findings.sort()
    return ScanResult(tuple(findings), files, lines, ignored, tuple(scanned))
