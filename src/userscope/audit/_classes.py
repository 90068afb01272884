"""Look inside classes: what a class body keeps, keyed by whom, and how bad sharing it is.

The scanner summarises every class of the scanned tree once (``analyze_class``);
``judge`` then decides the severity, evidence and advice of a finding about an
object of that class, following base classes defined in the tree.
"""

from __future__ import annotations

import ast
import re
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from ._config import AuditConfig

__all__ = [
    "CONTAINER_FACTORIES",
    "CONTAINER_LITERALS",
    "ClassIndex",
    "ClassInfo",
    "Evidence",
    "Verdict",
    "analyze_class",
    "judge",
    "scope_for",
]

_FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef)
_INIT_METHODS = frozenset(
    {"__init__", "__post_init__", "__new__", "__init_subclass__", "setup", "model_post_init"}
)
_INIT_PREFIXES = ("_init", "init_", "_setup", "setup_", "_load", "load_", "_build", "build_")
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
_REMOVERS = frozenset({"pop", "popitem", "remove", "discard", "clear", "__delitem__"})
CONTAINER_FACTORIES = frozenset(
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
"""Calls that make a mutable container (the module-level rules use these)."""
# a class body's state also counts third-party caches
_CONTAINER_FACTORIES = CONTAINER_FACTORIES | {"TTLCache", "LRUCache"}
CONTAINER_LITERALS = (ast.Dict, ast.List, ast.Set, ast.DictComp, ast.ListComp, ast.SetComp)
_CLIENTISH = ("session", "client", "engine", "connect", "pool")
_STATE_TEXT = re.compile(
    r"\b(?:self|cls)\.\w+\s*(?:\[|:|[-+*/|&%^@]?=(?!=)|\.\s*(?:"
    + "|".join(sorted(_MUTATORS))
    + r")\s*\()|\bdel\b"
)
# class-name endings that, with mutable state in the body, mark an object as stateful
_STATEFUL_ROLES = (
    "Service",
    "Handler",
    "Context",
    "Controller",
    "Coordinator",
    "Processor",
    "Tracker",
    "Monitor",
    "Collector",
    "Supervisor",
    "Broker",
    "Dispatcher",
    "Queue",
    "Buffer",
    "Notifier",
    "Emitter",
    "Listener",
)


@dataclass(frozen=True, slots=True)
class Evidence:
    """Why an object is per-user (``key`` set) or merely stateful (``key`` empty).

    Attributes:
        text: Human-readable evidence, e.g. "`_conns[user_id]` in `Pool.add`".
        key: The identity key or attribute that matched (``user_id``, ``_user``).
    """

    text: str
    key: str = ""


@dataclass(slots=True)
class ClassInfo:
    """What one class body does with its state.

    Attributes:
        name: Class name.
        module: Dotted module path derived from the file path.
        line: Line of the ``class`` statement.
        bases: Base classes, import-resolved dotted names.
        identity: Instance/class state keyed by an identity or holding the user.
        state: Mutable state without identity evidence, changed by public methods.
        internal_state: The same, changed only by private (``_x``) methods.
        class_keyed: Class-level containers keyed by an identity:
            ``(attribute, line of its definition, evidence)``.
        class_held: Singletons cached on the class by a classmethod:
            ``(attribute, method, line, import-resolved class of the value or "")``.
        abstract: Whether the class is an interface (ABC, Protocol, abstract methods).
    """

    name: str
    module: str
    line: int
    bases: tuple[str, ...] = ()
    identity: list[Evidence] = field(default_factory=list)
    state: list[Evidence] = field(default_factory=list)
    internal_state: list[Evidence] = field(default_factory=list)
    class_keyed: list[tuple[str, int, Evidence]] = field(default_factory=list)
    class_held: list[tuple[str, str, int, str]] = field(default_factory=list)
    abstract: bool = False


@dataclass(frozen=True, slots=True)
class Verdict:
    """Severity of sharing one object process-wide, with the evidence and the fix."""

    severity: str
    evidence: str
    advice: str


def scope_for(key: str) -> str:
    """The userscope provider that fits state keyed by ``key``.

    Example:
        >>> from userscope.audit._classes import scope_for
        >>> scope_for("connection_id"), scope_for("run_id"), scope_for("user_id")
        ('ConnectionScoped', 'RequestScoped', 'UserScoped')
    """
    lowered = key.lower().lstrip("_")
    if any(word in lowered for word in ("connection", "conn", "socket", "sid", "ws_")):
        return "ConnectionScoped"
    if any(word in lowered for word in ("request", "run", "execution")):
        return "RequestScoped"
    return "UserScoped"


def _dotted(node: ast.expr) -> str | None:
    parts: list[str] = []
    while type(node) is ast.Attribute:
        parts.append(node.attr)
        node = node.value
    if type(node) is ast.Name:
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


def _is_container(value: ast.expr | None) -> bool:
    if value is None:
        return False
    if isinstance(value, CONTAINER_LITERALS):
        return True
    if type(value) is ast.Call:
        dotted = _dotted(value.func)
        return dotted is not None and dotted.rpartition(".")[2] in _CONTAINER_FACTORIES
    return False


def _is_factory_of_container(value: ast.expr) -> bool:
    if type(value) is ast.Lambda:
        return _is_container(value.body)
    dotted = _dotted(value)
    return dotted is not None and dotted.rpartition(".")[2] in _CONTAINER_FACTORIES


def _is_blank(value: ast.expr) -> bool:
    """None, a constant or an empty container: a reset, not state about anyone."""
    if isinstance(value, ast.Constant):
        return True
    if isinstance(value, ast.Dict):
        return not value.keys
    if isinstance(value, ast.List | ast.Set | ast.Tuple):
        return not value.elts
    if isinstance(value, ast.Call) and not value.args and not value.keywords:
        return _dotted(value.func) in ("dict", "list", "set", "tuple", "frozenset")
    return False


def _identity_in(expr: ast.expr, config: AuditConfig) -> str | None:
    """The first identity key named in ``expr`` (``user_id``, ``ctx.thread_id``)."""
    is_user = config.is_user_name
    for node in ast.walk(expr):
        if type(node) is ast.Name and is_user(node.id):
            return node.id
        if type(node) is ast.Attribute and is_user(node.attr):
            return node.attr
    return None


class _Owner:
    """Classifies ``self.x`` / ``cls.x`` / ``ClassName.x`` owners of state."""

    __slots__ = ("class_attrs", "class_name")

    def __init__(self, class_name: str, class_attrs: dict[str, int]) -> None:
        self.class_name = class_name
        self.class_attrs = class_attrs

    def attr(self, node: ast.expr) -> tuple[str, bool] | None:
        """``(attribute, is_class_level)`` when ``node`` is state of this class."""
        if type(node) is not ast.Attribute or type(node.value) is not ast.Name:
            return None
        holder = node.value.id
        if holder in ("cls", self.class_name):
            return node.attr, True
        if holder == "self":
            return node.attr, node.attr in self.class_attrs
        return None


def _subscript_chain(node: ast.expr) -> tuple[ast.expr, list[ast.expr]]:
    keys: list[ast.expr] = []
    while type(node) is ast.Subscript:
        keys.append(node.slice)
        node = node.value
    return node, keys


def _method_nodes(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> Iterator[ast.AST]:
    """Every node of a method body in source order, not descending into nested classes."""
    queue: deque[ast.AST] = deque(fn.body)
    while queue:
        node = queue.popleft()
        yield node
        if type(node) is not ast.ClassDef:
            queue.extend(ast.iter_child_nodes(node))


def _writes_state(lines: list[str], fn: ast.FunctionDef | ast.AsyncFunctionDef, name: str) -> bool:
    """Whether the method's text can write ``self.x``/``cls.x`` state (a cheap pre-check)."""
    text = "\n".join(lines[fn.lineno - 1 : fn.end_lineno or fn.lineno])
    if _STATE_TEXT.search(text) is not None:
        return True
    return f"{name}." in text


def analyze_class(
    cls: ast.ClassDef,
    module: str,
    config: AuditConfig,
    resolve: Callable[[str], str],
    lines: list[str] | None = None,
) -> ClassInfo:
    """Summarise what ``cls`` keeps in its instances and on the class.

    Args:
        cls: The class statement.
        module: Dotted module path of its file.
        config: Supplies identity keys and identity attributes.
        resolve: Turns a dotted name into its import-resolved form.
        lines: The file's source lines; methods whose text cannot write state
            are then skipped without walking them.

    Returns:
        The summary.
    """
    bases = tuple(resolve(d) for d in map(_dotted, cls.bases) if d and d != "object")
    info = ClassInfo(cls.name, module, cls.lineno, bases)
    info.abstract = any(b.rpartition(".")[2] in ("ABC", "Protocol") for b in bases) or any(
        isinstance(stmt, _FUNCTIONS)
        and any((_dotted(d) or "").endswith("abstractmethod") for d in stmt.decorator_list)
        for stmt in cls.body
    )
    class_attrs: dict[str, int] = {}
    for stmt in cls.body:
        if isinstance(stmt, ast.Assign) and _is_container(stmt.value):
            for target in stmt.targets:
                if type(target) is ast.Name:
                    class_attrs[target.id] = stmt.lineno
        elif (
            isinstance(stmt, ast.AnnAssign)
            and type(stmt.target) is ast.Name
            and _is_container(stmt.value)
        ):
            class_attrs[stmt.target.id] = stmt.lineno
    owner = _Owner(cls.name, class_attrs)
    seen: set[tuple[str, str]] = set()
    public: list[tuple[str, str]] = []  # public containers created in __init__
    for stmt in cls.body:  # dataclass/pydantic fields holding a fresh mutable container
        if (
            isinstance(stmt, ast.AnnAssign)
            and type(stmt.target) is ast.Name
            and type(stmt.value) is ast.Call
            and _dotted(stmt.value.func) in ("field", "dataclasses.field", "Field")
            and any(
                kw.arg == "default_factory" and _is_factory_of_container(kw.value)
                for kw in stmt.value.keywords
            )
        ):
            field_name = stmt.target.id
            seen.add((field_name, ""))
            info.state.append(Evidence(f"mutable field `{cls.name}.{field_name}`"))

    def note(attr: str, is_class: bool, key: str | None, where: str, shown: str) -> None:
        if attr.startswith("__") and attr.endswith("__"):
            return  # the object model's own bookkeeping (`__fields_set__`, `__dict__`)
        # state changed only by private methods is the module's own bookkeeping
        internal = key is None and where.startswith("_") and not where.endswith("__")
        marker = (attr, key or ("_" if internal else ""))
        if marker in seen:
            return
        seen.add(marker)
        evidence = Evidence(f"`{shown}` in `{cls.name}.{where}`", key or "")
        if key is None:
            (info.internal_state if internal else info.state).append(evidence)
            return
        info.identity.append(evidence)
        if is_class and attr in class_attrs:
            info.class_keyed.append((attr, class_attrs[attr], evidence))

    for stmt in cls.body:
        if not isinstance(stmt, _FUNCTIONS):
            continue
        name = stmt.name
        if lines is not None and not _writes_state(lines, stmt, cls.name):
            continue
        in_init = name in _INIT_METHODS or name.startswith(_INIT_PREFIXES)
        is_classmethod = any(
            _dotted(d) in ("classmethod", "staticmethod") for d in stmt.decorator_list
        )
        for node in _method_nodes(stmt):
            kind = type(node)
            if kind is ast.Assign or kind is ast.AnnAssign or kind is ast.AugAssign:
                assert isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign)
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                value = node.value
                for target in targets:
                    base, keys = _subscript_chain(target)
                    found = owner.attr(base)
                    if found is None:
                        continue
                    attr, is_class = found
                    if keys:
                        key = None
                        for k in keys:
                            key = _identity_in(k, config)
                            if key:
                                break
                        if key or not in_init:
                            shown = f"{attr}[{ast.unparse(keys[-1])}]"
                            note(attr, is_class, key, name, shown)
                        continue
                    if value is None:
                        continue
                    assert isinstance(base, ast.Attribute)
                    assert isinstance(base.value, ast.Name)
                    holder = base.value.id
                    if (
                        holder in ("cls", cls.name)
                        and is_classmethod
                        and kind is not ast.AugAssign
                        and not _is_blank(value)
                        and not _is_param(value, stmt)
                    ):
                        created = value.value if type(value) is ast.Await else value
                        ref = ""
                        if type(created) is ast.Call:
                            dotted = _dotted(created.func)
                            ref = resolve(dotted) if dotted else ""
                        info.class_held.append((attr, name, node.lineno, ref))
                        continue
                    if holder != "self":
                        continue
                    if (
                        not in_init
                        and config.is_identity_attribute(attr)
                        and not _is_blank(value)
                        and not _clientish(value)
                    ):
                        note(attr, False, attr, name, f"self.{attr}")
                        continue
                    if not in_init and (kind is ast.AugAssign or not _is_blank(value)):
                        note(attr, False, None, name, f"self.{attr}")
                    elif in_init and not attr.startswith("_") and _is_container(value):
                        # a public container: callers fill it (`manager.loops[k] = ...`)
                        public.append((attr, name))
            elif kind is ast.Call:
                assert isinstance(node, ast.Call)
                func = node.func
                if type(func) is not ast.Attribute or func.attr not in _MUTATORS:
                    continue
                base, keys = _subscript_chain(func.value)
                found = owner.attr(base)
                if found is None:
                    continue
                attr, is_class = found
                key = None
                for k in keys:
                    key = _identity_in(k, config)
                    if key:
                        break
                if (
                    key is None
                    and node.args
                    and func.attr in ("setdefault", "__setitem__", "add", "pop")
                ):
                    key = _identity_in(node.args[0], config)
                if key is None and func.attr == "update":
                    for kw in node.keywords:
                        if kw.arg and config.is_user_name(kw.arg):
                            key = kw.arg
                            break
                if key is None and (in_init or func.attr in _REMOVERS):
                    continue  # emptying a container accumulates nothing
                if keys:
                    shown = f"{attr}[{ast.unparse(keys[-1])}]"
                elif key is not None:
                    shown = f"{attr}.{func.attr}({key})"
                else:
                    shown = f"{attr}.{func.attr}()"
                note(attr, is_class, key, name, shown)
            elif kind is ast.Delete:
                assert isinstance(node, ast.Delete)
                for target in node.targets:
                    base, keys = _subscript_chain(target)
                    found = owner.attr(base)
                    if found is None or not keys:
                        continue
                    attr, is_class = found
                    key = None
                    for k in keys:
                        key = _identity_in(k, config)
                        if key:
                            break
                    if key is not None:  # `del self._x[k]` alone accumulates nothing
                        note(attr, is_class, key, name, f"{attr}[{ast.unparse(keys[-1])}]")
    noted = {attr for attr, key in seen if key == ""}
    for attr, where in public:  # weaker than a mutation seen in a method: last
        if attr not in noted:
            note(attr, False, None, where, f"self.{attr}")
    return info


def _is_param(value: ast.expr, fn: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """``cls.x = x`` with ``x`` a parameter: a setter, not a cached singleton."""
    if type(value) is not ast.Name:
        return False
    args = fn.args
    names = {a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)}
    return value.id in names


def _clientish(value: ast.expr) -> bool:
    """``self._session = aiohttp.ClientSession()``: a connection object, not an identity."""
    node = value.value if type(value) is ast.Await else value
    if type(node) is not ast.Call:
        return False
    dotted = _dotted(node.func)
    if dotted is None:
        return False
    last = dotted.rpartition(".")[2].lower()
    return any(word in last for word in _CLIENTISH)


class ClassIndex:
    """Every class of the scanned tree by name, resolvable from an import path."""

    __slots__ = ("_by_name", "_children")

    def __init__(self) -> None:
        self._by_name: dict[str, list[ClassInfo]] = {}
        self._children: dict[str, list[ClassInfo]] | None = None

    def add(self, info: ClassInfo) -> None:
        """Index one class."""
        self._by_name.setdefault(info.name, []).append(info)
        self._children = None

    def subclasses(self, info: ClassInfo) -> list[ClassInfo]:
        """Classes of the tree that name ``info``'s class as a direct base."""
        if self._children is None:
            children: dict[str, list[ClassInfo]] = {}
            for infos in self._by_name.values():
                for child in infos:
                    for base in child.bases:
                        children.setdefault(base.rpartition(".")[2], []).append(child)
            self._children = children
        return [c for c in self._children.get(info.name, []) if c is not info]

    def lookup(self, ref: str, module: str) -> ClassInfo | None:
        """The class ``ref`` (import-resolved dotted name) means when used in ``module``."""
        prefix, _, name = ref.rpartition(".")
        candidates = self._by_name.get(name)
        if not candidates:
            return None
        if len(candidates) == 1:
            return candidates[0]
        wanted = absolute_module(prefix, module) if prefix else module
        suffix = "." + wanted
        for info in candidates:
            if info.module == wanted or ("." + info.module).endswith(suffix):
                return info
        # re-exported or ambiguous: the candidate nearest to the user's module
        return max(candidates, key=lambda info: _common_prefix(info.module, module))


def absolute_module(ref: str, module: str) -> str:
    """``ref`` as written in an import of ``module`` (``..state``) made absolute.

    Example:
        >>> from userscope.audit._classes import absolute_module
        >>> absolute_module("..utils.state", "app.routers.chat"), absolute_module("x.y", "a")
        ('app.utils.state', 'x.y')
    """
    if not ref.startswith("."):
        return ref
    level = len(ref) - len(ref.lstrip("."))
    parts = module.split(".")
    head = parts[: max(len(parts) - level, 0)]
    rest = ref.lstrip(".")
    return ".".join([*head, rest] if rest else head)


def _common_prefix(a: str, b: str) -> int:
    count = 0
    for x, y in zip(a.split("."), b.split("."), strict=False):
        if x != y:
            break
        count += 1
    return count


def _gather(info: ClassInfo, index: ClassIndex, attr: str, depth: int = 0) -> list[Evidence]:
    found: list[Evidence] = list(getattr(info, attr))
    if depth < 5:
        for base in info.bases:
            parent = index.lookup(base, info.module)
            if parent is not None and parent is not info:
                found.extend(_gather(parent, index, attr, depth + 1))
    return found


def judge(
    ref: str,
    module: str,
    target: str,
    index: ClassIndex,
    config: AuditConfig,
) -> Verdict | None:
    """How bad it is to share one object built by ``ref`` across the process.

    Args:
        ref: Import-resolved dotted name of the class (or factory) called.
        module: Module the object is created in.
        target: Name the object is bound to (shown in the advice).
        index: Classes of the scanned tree.
        config: Name patterns.

    Returns:
        ``None`` when the object is harmless (immutable settings, a stateless
        class of the tree, an unknown class with an unremarkable name).
    """
    name = ref.rpartition(".")[2]
    plain = name.removesuffix("Impl") or name
    info = index.lookup(ref, module) if name[:1].isupper() else None
    if info is None and plain != name:  # `XImpl = get_impl(X, ...)`: judge X and its subclasses
        info = index.lookup(ref[: -len("Impl")], module)
    shown = f"`{target}`" if target else "it"
    keep = f"keep {shown} process-wide; make sure it holds no per-user data"
    if info is not None:
        identity = _gather(info, index, "identity")
        if not identity and info.abstract:
            # an interface: what its implementations in the tree keep
            for child in index.subclasses(info):
                identity.extend(_gather(child, index, "identity"))
                for grandchild in index.subclasses(child):
                    identity.extend(_gather(grandchild, index, "identity"))
        if identity:
            evidence = identity[0]
            scope = scope_for(evidence.key)
            who = {"UserScoped": "user", "ConnectionScoped": "connection"}.get(scope, "request")
            bound = f"`{target} = {scope}({name})`" if target else f"`{scope}({name})`"
            advice = (
                f"give each {who} their own `{name}`: declare {bound} in your container and "
                f"resolve it inside a scope instead of sharing one process-wide"
            )
            return Verdict("error", evidence.text, advice)
        if config.is_safe(plain):
            return None
        state = _gather(info, index, "state")
        if config.is_infrastructure(plain) and (state or config.is_stateful(plain)):
            return Verdict("note", state[0].text if state else "", keep)
        if state and (config.is_stateful(plain) or plain.endswith(_STATEFUL_ROLES)):
            return Verdict("warning", state[0].text, _maybe(target, name))
        unresolved = [b for b in info.bases if index.lookup(b, info.module) is None]
        if unresolved and config.is_stateful(plain):
            return Verdict("warning", "", _maybe(target, name))
        return None
    if config.is_safe(plain) or not config.is_stateful(plain):
        if name[:1].isupper() or not config.is_infrastructure(name):
            return None
        return Verdict("note", "", keep)
    if config.is_infrastructure(plain):
        return Verdict("note", "", keep)
    return Verdict("warning", "", _maybe(target, name))


def _maybe(target: str, name: str) -> str:
    bound = f"`{target} = UserScoped({name})`" if target else f"`UserScoped({name})`"
    return (
        f"if `{name}` holds per-user or per-request data, declare {bound} (or "
        f"`ConnectionScoped`/`RequestScoped`) and resolve it inside a scope; if it is "
        "shared by design, keep it process-wide and make sure it holds no per-user data"
    )
