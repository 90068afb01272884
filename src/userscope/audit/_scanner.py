"""AST scanner: one read, one parse and one walk per file."""

from __future__ import annotations

import ast
import errno
import importlib.util
import io
import os
import re
import tokenize
import warnings
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

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
_CONTAINER_FACTORIES = frozenset(
    {
        "dict",
        "list",
        "set",
        "defaultdict",
        "OrderedDict",
        "Counter",
        "deque",
        "WeakValueDictionary",
        "WeakKeyDictionary",
        "WeakSet",
    }
)
_CONTAINER_LITERALS = (ast.Dict, ast.List, ast.Set, ast.DictComp, ast.ListComp, ast.SetComp)
_INSTANCE_ACCESSORS = ("get_instance", "instance", "getInstance", "shared_instance", "shared")
_INSTANCE_ATTR = re.compile(r"_\w*(?:instances?|singleton)$", re.IGNORECASE)
_IMMUTABLE_RESULTS = frozenset(
    {"str", "int", "float", "bool", "bytes", "complex", "frozenset", "tuple", "type", "Pattern"}
    | {"FrozenSet", "Tuple", "Type", "None"}
)
_USERISH_NAME = re.compile(r"user|session", re.IGNORECASE)
_AS_NAME = re.compile(r"\bas\s+([A-Za-z_][A-Za-z0-9_]*)")
_IGNORE = re.compile(r"#\s*userscope:\s*ignore(?:\[([^\]]*)\])?")
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
    assigned_globals: list[str] = field(default_factory=list)
    locals_: frozenset[str] | None = None

    def child(self, name: str) -> str:
        return f"{self.qualname}.{name}" if self.qualname else name


_Raw = tuple[int, int, str, str, str]  # line, col_offset (utf-8 bytes), code, message, symbol


class _FileScanner:
    """Finds every rule's pattern in one parsed module."""

    def __init__(self, tree: ast.Module, source: str, config: AuditConfig) -> None:
        self.tree = tree
        self.source = source
        self.config = config
        self.disabled = config.disable
        self.raw: list[_Raw] = []
        self.imports: dict[str, str] = {}
        self.classes: dict[str, tuple[str, ...]] = {}
        self.functions: dict[str, tuple[str, ...]] = {}
        self.module_names: set[str] = set()
        self.containers: dict[str, ast.stmt] = {}
        self.mutations: dict[str, tuple[str, bool]] = {}
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

    def _add(self, code: str, node: ast.AST, message: str, symbol: str) -> None:
        if code not in self.disabled:
            line = getattr(node, "lineno", 1)
            col = getattr(node, "col_offset", 0)
            self.raw.append((line, col, code, message, symbol))

    # -- pass 1: module-level names ---------------------------------------------

    def _collect(self, body: list[ast.stmt]) -> None:
        for stmt in body:
            if isinstance(stmt, ast.ClassDef):
                self.classes[stmt.name] = self._ctor_params(stmt)
                self.module_names.add(stmt.name)
            elif isinstance(stmt, _FUNCTIONS):
                self.functions[stmt.name] = _params(stmt, skip_first=False)
                self.module_names.add(stmt.name)
            elif isinstance(stmt, ast.Import | ast.ImportFrom):
                self._import(stmt)
            elif isinstance(stmt, ast.Assign | ast.AnnAssign):
                value = stmt.value
                targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
                is_container = value is not None and self._is_container(value)
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
        if isinstance(value, _CONTAINER_LITERALS):
            return True
        if type(value) is ast.Call:
            dotted = _dotted(value.func)
            return dotted is not None and _last(dotted) in _CONTAINER_FACTORIES
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
                self._note_store(bound, scope)
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

    def _note_store(self, names: list[str], scope: _Scope) -> None:
        """Record assignments to ``global`` names (constants and ``+=`` are resets/counters)."""
        if scope.kind == "function" and scope.globals_:
            for name in names:
                if name in scope.globals_ and name not in scope.assigned_globals:
                    scope.assigned_globals.append(name)

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
                self._note_store(names, scope)
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
        cls = _last(dotted)
        if cls[:1].isupper() and self.config.is_stateful(cls):
            shown = ", ".join(f"`{n}`" for n in names) or "an object"
            self._add(
                "US001",
                stmt,
                f"module-level {shown} is one `{cls}` shared by every user and request",
                ",".join(names) or cls,
            )

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
        if inner.assigned_globals:
            shown = ", ".join(f"`{name}`" for name in inner.assigned_globals)
            self._add(
                "US002",
                fn,
                f"`{fn.name}()` assigns module global {shown} at run time: one object "
                "shared by every user and request",
                qualname,
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
            if self._returns_safe(fn):
                return
            self._add(
                "US004",
                fn,
                f"`{fn.name}()` takes no arguments and is cached with `@{dotted}`: its result "
                "is a process-wide singleton",
                qualname,
            )
            return

    def _returns_safe(self, fn: _Func) -> bool:
        name = _annotation_name(fn.returns)
        if name is not None:
            return name in _IMMUTABLE_RESULTS or self.config.is_safe(name)
        returned = [
            _annotation_name(node.value.func)
            for node in ast.walk(fn)
            if type(node) is ast.Return and type(node.value) is ast.Call
        ]
        return bool(returned) and all(n is not None and self.config.is_safe(n) for n in returned)

    def _class(self, cls: ast.ClassDef, scope: _Scope) -> None:
        qualname = scope.child(cls.name)
        if "US003" not in self.disabled:
            evidence = self._singleton_evidence(cls)
            if evidence:
                self._add(
                    "US003",
                    cls,
                    f"class `{cls.name}` is a singleton ({evidence}): every user gets the "
                    "same instance",
                    qualname,
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
            if method is not None and any(
                _dotted(d) in ("classmethod", "staticmethod") for d in method.decorator_list
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
                    self._add(
                        "US002",
                        stmt,
                        f"module-level `if {name} is None: {name} = ...` lazily creates one "
                        f"shared `{name}`",
                        name,
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
                or holder in scope.params
                or self._is_local(holder, scope)
            ):
                return
            wanted = f"{holder}.{tested.attr}"
            for inner in stmt.body:
                if isinstance(inner, ast.Assign) and any(
                    _dotted(t) == wanted for t in inner.targets
                ):
                    self._add(
                        "US002",
                        stmt,
                        f"`{_last(scope.qualname)}()` lazily sets `{wanted}` on a module-level "
                        "object: one instance ends up shared by every user",
                        f"{scope.qualname}:{wanted}",
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
            keyed = (
                (key is not None and self._mentions_user(key))
                or any(self._mentions_user(arg) for arg in call.args)
                or any(self._mentions_user(kw.value) for kw in call.keywords)
            )
            self._record_mutation(owner.id, scope, keyed)

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
        is_user = self.config.is_user_name
        for node in ast.walk(expr):
            if (isinstance(node, ast.Name) and is_user(node.id)) or (
                isinstance(node, ast.Attribute) and is_user(node.attr)
            ):
                return True
        return False

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
        if not (self.containers and scope.kind == "function"):
            return
        keys: list[ast.expr] = []
        node = target
        while isinstance(node, ast.Subscript):  # _sessions[user_id]["history"] = ...
            keys.append(node.slice)
            node = node.value
        if (
            keys
            and isinstance(node, ast.Name)
            and node.id in self.containers
            and not self._is_local(node.id, scope)
        ):
            keyed = any(self._mentions_user(key) for key in keys)
            self._record_mutation(node.id, scope, keyed)

    def _record_mutation(self, name: str, scope: _Scope, keyed: bool) -> None:
        keyed = keyed or _USERISH_NAME.search(name) is not None
        previous = self.mutations.get(name)
        if previous is None or (keyed and not previous[1]):
            self.mutations[name] = (scope.qualname, keyed)

    def _emit_containers(self) -> None:
        for name, (function, keyed) in self.mutations.items():
            if keyed:
                self._add(
                    "US006",
                    self.containers[name],
                    f"module-level container `{name}` is keyed by user/session and mutated in "
                    f"`{function}()`: every user's entries live in one process-wide map",
                    name,
                )


# -- files, comments and columns ----------------------------------------------------


def _ignores(source: str) -> dict[int, frozenset[str] | None]:
    """Line -> codes silenced there (None = every code)."""
    found: dict[int, frozenset[str] | None] = {}
    try:
        for token in tokenize.generate_tokens(io.StringIO(source).readline):
            if token.type == tokenize.COMMENT:
                match = _IGNORE.search(token.string)
                if match:
                    codes = match.group(1)
                    line = token.start[0]
                    if codes is None or not codes.strip():
                        found[line] = None
                    elif found.get(line, frozenset()) is not None:
                        parsed = frozenset(c.strip().upper() for c in codes.split(",") if c.strip())
                        found[line] = (found.get(line) or frozenset()) | parsed
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


def _scan_text(data: str | bytes, path: str, config: AuditConfig) -> tuple[list[Finding], int, int]:
    """Findings (after inline ignores), line count and ignored count of one file."""
    try:
        text = importlib.util.decode_source(data) if isinstance(data, bytes) else data
    except (UnicodeDecodeError, SyntaxError, LookupError) as err:
        if "US000" in config.disable:
            return [], 0, 0
        return [_unparsable(path, 1, 1, f"could not decode file: {err}")], 0, 0
    lines_count = _count_lines(text)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = ast.parse(text, filename=path)
    except SyntaxError as err:
        if "US000" in config.disable:
            return [], lines_count, 0
        message = f"could not parse file: {err.msg}"
        return [_unparsable(path, err.lineno or 1, err.offset or 1, message)], lines_count, 0
    except (ValueError, RecursionError, MemoryError) as err:
        if "US000" in config.disable:
            return [], lines_count, 0
        return [_unparsable(path, 1, 1, f"could not parse file: {err}")], lines_count, 0
    try:
        raw = _FileScanner(tree, text, config).run()
    except RecursionError:
        if "US000" in config.disable:
            return [], lines_count, 0
        return [_unparsable(path, 1, 1, "too deeply nested to audit")], lines_count, 0
    if not raw:
        return [], lines_count, 0
    raw.sort()
    lines = text.splitlines()
    seen: dict[tuple[str, str], int] = {}
    findings: list[Finding] = []
    for line, col_offset, code, message, symbol in raw:
        key = (code, symbol)
        occurrence = seen.get(key, 0)
        seen[key] = occurrence + 1
        col = _char_col(lines, line, col_offset)
        findings.append(Finding(path, line, col, code, message, symbol, occurrence))
    ignored = 0
    if "userscope" in text:
        silenced = _ignores(text)
        if silenced:
            kept = []
            for finding in findings:
                codes = silenced.get(finding.line, frozenset())
                if codes is None or finding.code in codes:
                    ignored += 1
                else:
                    kept.append(finding)
            findings = kept
    return findings, lines_count, ignored


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
    findings, _, _ = _scan_text(source, path, config or AuditConfig())
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
    for file in iter_python_files(paths, config):
        shown = _display(file, cwd)
        files += 1
        try:
            data = file.read_bytes()
        except OSError as err:
            if "US000" not in config.disable:
                findings.append(_unparsable(shown, 1, 1, f"could not read file: {err.strerror}"))
            continue
        found, count, silenced = _scan_text(data, shown, config)
        findings.extend(found)
        lines += count
        ignored += silenced
    findings.sort()
    return ScanResult(tuple(findings), files, lines, ignored)
