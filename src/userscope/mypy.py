"""mypy plugin: a wrong annotation on an injected parameter is a type error.

Plain typing cannot relate an annotation to the provider named next to it:

* ``agent: Bridge = Provide[Container.agent]`` -- dependency-injector types
  ``Provide[...]`` as ``Any``, so any annotation is accepted;
* ``agent: Annotated[Bridge, Inject(Container.agent)]`` -- mypy never looks at
  ``Annotated`` metadata.

Enable the plugin with one line of configuration::

    # pyproject.toml
    [tool.mypy]
    plugins = ["userscope.mypy"]

and both become errors, at the parameter's line::

    error: Incompatible default for argument "agent" (default has type "Agent",
           argument has type "Bridge")  [assignment]
    error: Incompatible types in assignment (expression has type "Agent",
           variable has type "Bridge")  [assignment]

What it does:

* ``Provide[provider]`` is typed as what ``provider`` provides (``T`` of a
  ``Provider[T]``; ``Any`` for names, modifiers and untyped providers), also inside
  ``Depends(Provide[...])``.
* For every ``Annotated[T, marker]`` annotation of a function parameter whose metadata is
  ``Inject(...)``, ``Provide[...]`` or ``Depends(Provide[...])``,
  the plugin adds a type-only check, ``_userscope_inject_<name>: T = marker``, at the top
  of the function body in mypy's tree (never in your code) on the metadata's line; mypy
  reports a mismatch as an ``[assignment]`` error there. ``@overload`` signatures and
  bodies of only ``...`` (protocols) are left alone. Names in the annotation are looked
  up from the function body, so a name defined only in an enclosing *class* body is not
  found there (mypy then reports it as undefined). A type alias
  (``AgentDep = Annotated[Agent, Inject(Container.agent)]``) is not checked: mypy drops
  its metadata before any plugin sees it.

Example:
    >>> from userscope.mypy import plugin
    >>> plugin("1.10").__name__
    'UserscopePlugin'
"""

from __future__ import annotations

import ast
import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

from mypy.errors import Errors
from mypy.maptype import map_instance_to_supertype
from mypy.nodes import (
    AssignmentStmt,
    Block,
    ClassDef,
    Decorator,
    Expression,
    FuncDef,
    IfStmt,
    IndexExpr,
    MypyFile,
    OverloadedFuncDef,
    RefExpr,
    Statement,
)
from mypy.options import Options
from mypy.plugin import (
    AnalyzeTypeContext,
    FunctionContext,
    FunctionSigContext,
    MethodContext,
    Plugin,
)
from mypy.types import AnyType, CallableType, Instance, Type, TypeOfAny, get_proper_type

__all__ = ["UserscopePlugin", "plugin"]

_PROVIDE = "dependency_injector.wiring.Provide"
_MARKER_ITEM = "dependency_injector.wiring._Marker.__getitem__"
_PROVIDER = "dependency_injector.providers.Provider"
_DEPENDS = "fastapi.param_functions.Depends"
_ANNOTATED = ("typing.Annotated", "typing_extensions.Annotated")
#: the tree of each file already rewritten in this run (mypy analyses a module many times)
_seen: dict[str, MypyFile] = {}
#: prefix of the variables the plugin adds to mypy's tree
CHECK_PREFIX = "_userscope_inject_"


class UserscopePlugin(Plugin):
    """Types ``Provide[...]`` and checks ``Annotated[T, Inject(...)]`` parameters.

    Example:
        >>> from userscope.mypy import UserscopePlugin
        >>> UserscopePlugin.__mro__[1].__name__
        'Plugin'
    """

    def get_method_hook(self, fullname: str) -> Callable[[MethodContext], Type] | None:
        """``Provide[provider]`` is typed as what ``provider`` provides."""
        return _provide_item if fullname == _MARKER_ITEM else None

    def get_function_signature_hook(
        self, fullname: str
    ) -> Callable[[FunctionSigContext], CallableType] | None:
        """``Depends(Provide[...])`` accepts the marker."""
        return _depends_signature if fullname == _DEPENDS else None

    def get_function_hook(self, fullname: str) -> Callable[[FunctionContext], Type] | None:
        """``Depends(Provide[provider])`` is typed as what ``provider`` provides."""
        return _depends_type if fullname == _DEPENDS else None

    def get_type_analyze_hook(self, fullname: str) -> Callable[[AnalyzeTypeContext], Type] | None:
        """At a module's first ``Annotated[...]``, add the checks of its markers."""
        if fullname not in _ANNOTATED:
            return None
        options = self.options

        def annotated(ctx: AnalyzeTypeContext) -> Type:
            file = getattr(getattr(ctx.api, "api", None), "cur_mod_node", None)
            if isinstance(file, MypyFile) and _seen.get(file.path) is not file:
                _seen[file.path] = file
                # never break a type check: on any surprise the file is simply not rewritten
                with contextlib.suppress(Exception):
                    add_annotated_checks(file, options)
            return _analyze_annotated(ctx, fullname)

        return annotated


def plugin(version: str) -> type[UserscopePlugin]:
    """mypy's entry point (``plugins = ["userscope.mypy"]``).

    Example:
        >>> from userscope.mypy import plugin, UserscopePlugin
        >>> plugin("1.10") is UserscopePlugin
        True
    """
    return UserscopePlugin


def _analyze_annotated(ctx: AnalyzeTypeContext, fullname: str) -> Type:
    """mypy's own analysis of ``Annotated[T, ...]`` (the hook replaces it otherwise)."""
    special = getattr(ctx.api, "try_analyze_special_unbound_type", None)
    if callable(special):
        analyzed = special(ctx.type, fullname)
        if isinstance(analyzed, Type):
            return analyzed
    if not ctx.type.args:
        return AnyType(TypeOfAny.from_error)
    return ctx.api.analyze_type(ctx.type.args[0])


# -- Provide[...] ------------------------------------------------------------------------


def _provided(item: Type) -> Type | None:
    """``T`` when ``item`` is a ``Provider[T]`` instance, else ``None``."""
    proper = get_proper_type(item)
    if not isinstance(proper, Instance):
        return None
    for info in proper.type.mro:
        if info.fullname == _PROVIDER:
            base = map_instance_to_supertype(proper, info)
            if base.args and not isinstance(get_proper_type(base.args[0]), AnyType):
                return base.args[0]
            return None
    return None


def _is_provide(expr: object) -> bool:
    return (
        isinstance(expr, IndexExpr)
        and isinstance(expr.base, RefExpr)
        and expr.base.fullname == _PROVIDE
    )


def _provide_item(ctx: MethodContext) -> Type:
    if not _is_provide(ctx.context) or not ctx.arg_types or len(ctx.arg_types[0]) != 1:
        return ctx.default_return_type
    return _provided(ctx.arg_types[0][0]) or ctx.default_return_type


def _first_arg_is_provide(args: list[list[Expression]]) -> bool:
    return bool(args) and len(args[0]) == 1 and _is_provide(args[0][0])


def _depends_signature(ctx: FunctionSigContext) -> CallableType:
    signature = ctx.default_signature
    if not _first_arg_is_provide(ctx.args) or not signature.arg_types:
        return signature
    any_type = AnyType(TypeOfAny.special_form)
    return signature.copy_modified(arg_types=[any_type, *signature.arg_types[1:]])


def _depends_type(ctx: FunctionContext) -> Type:
    if not _first_arg_is_provide(ctx.args):
        return ctx.default_return_type
    provided = get_proper_type(ctx.arg_types[0][0])
    if isinstance(provided, AnyType):
        return ctx.default_return_type
    return ctx.arg_types[0][0]


# -- Annotated[T, Inject(...)] -----------------------------------------------------------


def _last_name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _is_marker(node: ast.expr) -> bool:
    """``Inject(...)``, ``Provide[...]`` or ``Depends(Provide[...])``, by name."""
    if isinstance(node, ast.Subscript):
        return _last_name(node.value) == "Provide"
    if isinstance(node, ast.Call):
        name = _last_name(node.func)
        if name == "Inject":
            return True
        if name == "Depends" and node.args:
            first = node.args[0]
            return isinstance(first, ast.Subscript) and _last_name(first.value) == "Provide"
    return False


def _checks(source: str, annotation: ast.expr | None, name: str) -> Iterator[tuple[int, str]]:
    """``(line, statement)`` for each marker in an ``Annotated[T, ...]`` annotation."""
    if not isinstance(annotation, ast.Subscript):
        return
    if _last_name(annotation.value) != "Annotated":
        return
    parts = annotation.slice
    if not isinstance(parts, ast.Tuple) or len(parts.elts) < 2:
        return
    declared = ast.get_source_segment(source, parts.elts[0])
    if declared is None:
        return
    for meta in parts.elts[1:]:
        if not _is_marker(meta):
            continue
        marker = ast.get_source_segment(source, meta)
        if marker is not None:
            yield meta.lineno, f"{name}: ({declared}) = ({marker})"


def _stub_like(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """An ``@overload`` or a body of only a docstring and ``...`` (protocols, stubs)."""
    if any(_last_name(d) == "overload" for d in node.decorator_list):
        return True
    for stmt in node.body:
        if not (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant)):
            return False
        if not (stmt.value.value is Ellipsis or isinstance(stmt.value.value, str)):
            return False
    return any(
        isinstance(stmt, ast.Expr)
        and isinstance(stmt.value, ast.Constant)
        and stmt.value.value is Ellipsis
        for stmt in node.body
    )


def _function_checks(source: str, tree: ast.Module) -> dict[int, list[tuple[int, str]]]:
    """Checks per line of the ``def`` they belong to."""
    found: dict[int, list[tuple[int, str]]] = {}
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) or _stub_like(node):
            continue
        arguments = node.args
        params = [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]
        for param in params:
            for check in _checks(source, param.annotation, CHECK_PREFIX + param.arg):
                found.setdefault(node.lineno, []).append(check)
    return found


def _parse_statement(line: int, text: str, file: MypyFile, options: Options) -> Statement | None:
    from mypy.fastparse import parse  # only imported when a file has something to check

    snippet = "\n" * (line - 1) + text + "\n"
    parsed = parse(
        snippet, fnam=file.path, module=file.fullname, errors=Errors(options), options=options
    )
    statements = [s for s in parsed.defs if isinstance(s, AssignmentStmt)]
    return statements[0] if len(statements) == 1 else None


def _functions(statements: list[Statement]) -> Iterator[FuncDef]:
    for stmt in statements:
        if isinstance(stmt, FuncDef):
            yield stmt
            yield from _functions(stmt.body.body)
        elif isinstance(stmt, Decorator):
            yield stmt.func
            yield from _functions(stmt.func.body.body)
        elif isinstance(stmt, OverloadedFuncDef):
            impl = stmt.impl
            func = impl.func if isinstance(impl, Decorator) else impl
            if func is not None:
                yield func
                yield from _functions(func.body.body)
        elif isinstance(stmt, ClassDef):
            yield from _functions(stmt.defs.body)
        elif isinstance(stmt, IfStmt):
            for block in (*stmt.body, stmt.else_body):
                if isinstance(block, Block):
                    yield from _functions(block.body)


def _already_checked(statements: list[Statement]) -> bool:
    return any(
        isinstance(s, AssignmentStmt)
        and any(getattr(lv, "name", "").startswith(CHECK_PREFIX) for lv in s.lvalues)
        for s in statements
    )


def add_annotated_checks(file: MypyFile, options: Options) -> int:
    """Add the type-only checks of ``Annotated`` markers to ``file``; return how many.

    Example:
        >>> from userscope.mypy import add_annotated_checks
        >>> from mypy.errors import Errors
        >>> from mypy.fastparse import parse
        >>> from mypy.options import Options
        >>> add_annotated_checks(parse("x = 1\\n", "m.py", "m", Errors(Options())), Options())
        0
    """
    if file.is_stub or not file.path.endswith(".py") or not file.defs:
        return 0
    try:
        source = Path(file.path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return 0
    if "Annotated" not in source or not ("Inject(" in source or "Provide[" in source):
        return 0
    tree = ast.parse(source)
    added = 0
    by_def = _function_checks(source, tree)
    if by_def:
        for func in _functions(file.defs):
            checks = by_def.get(func.line)
            if not checks or _already_checked(func.body.body):
                continue
            for line, text in reversed(checks):
                stmt = _parse_statement(line, text, file, options)
                if stmt is not None:
                    func.body.body.insert(0, stmt)
                    added += 1
    return added
