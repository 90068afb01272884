"""The injection-plan compiler: one function ``build(frame)`` per scoped provider.

The function resolves every injection in plan order and calls the factory. Scoped
and ``CurrentContext`` injections are read straight from the active frame while they
are not overridden (then they are called, like any other provider); other providers
are called; plain values are passed as they are. This is dependency-injector's
Factory semantics with the per-call loop unrolled once. It runs with no lock held:
a missing scoped dependency goes through the creation protocol like any resolve.
"""

from __future__ import annotations

import inspect
import keyword
from collections.abc import Callable
from types import AsyncGeneratorType, CoroutineType, GeneratorType
from typing import TYPE_CHECKING, Any, Final

from dependency_injector import providers

from userscope.container._scope import ActiveFrame

if TYPE_CHECKING:
    from userscope.providers._scoped import ScopedProvider

__all__ = [
    "MISSING",
    "PLAIN_TYPES",
    "compile_builder",
    "injection_kind",
    "is_awaitable",
    "plan_entry",
]

MISSING: Final[Any] = object()

# How a plan entry is resolved.
VALUE: Final = 0
CALL: Final = 1
CONTEXT: Final = 2
SCOPED: Final = 3

PLAIN_TYPES: set[type] = set()  # result types seen to be neither awaitable nor async generators
# Types seen to be awaitable by their type alone (``__await__``, a registered Awaitable):
# the compiled runtime's own coroutines are not ``types.CoroutineType``, and asking
# ``inspect.isawaitable`` about them each time costs an ABC check (~4,000 instructions).
# Generators are never learned: whether one is awaitable depends on its code's flags.
AWAITABLE_TYPES: set[type] = set()
# The same two sets and the coroutine type again, for the checks above: compiled, C
# globals typed in the .pxd (a set membership test in C, no module-dict lookup per use).
_PLAIN: Final = PLAIN_TYPES
_AWAITABLE: Final = AWAITABLE_TYPES
_COROUTINE: Final = CoroutineType


def injection_kind(value: Any) -> int:
    """dependency-injector's rule: providers are called, delegates passed as they are."""
    from userscope.providers._scoped import CurrentContext, ScopedProvider

    if isinstance(value, CurrentContext):
        return CONTEXT  # read from the frame while not overridden
    if isinstance(value, ScopedProvider):
        return SCOPED  # read from the frame's cache while not overridden
    if providers.is_provider(value) and not providers.is_delegated(value):
        return CALL
    return VALUE


def plan_entry(key: str | None, value: Any) -> tuple[str | None, int, Any, Any]:
    """One entry of a provider's injection plan: ``(keyword or None, kind, value, core)``.

    ``core`` is the dependency's :class:`~userscope.providers._creation.ProviderCore` for
    the kinds read from the frame (the context, a scoped dependency), else ``None``. A
    dependency without one yet (half-built while a container copy walks a dependency
    cycle) is simply called, which resolves it the same way.
    """
    how = injection_kind(value)
    core = None
    if how in (CONTEXT, SCOPED):
        core = getattr(value, "_core", None)
        if core is None:
            how = CALL
    return (key, how, value, core)


def needs_await(result: Any) -> bool:
    """Whether a factory's result must be awaited (learns plain types as it goes)."""
    kind = type(result)
    if kind is _COROUTINE or kind is AsyncGeneratorType or kind in _AWAITABLE:
        return True
    if inspect.isawaitable(result):
        _learn_awaitable(kind)
        return True
    if isinstance(result, AsyncGeneratorType):
        return True
    if len(_PLAIN) < 4096:  # bounded: a type is only ever added once
        _PLAIN.add(type(result))
    return False


def is_awaitable(value: Any) -> bool:
    """Whether ``value`` must be awaited (async generators are not: they are iterated)."""
    kind = type(value)
    if kind in _PLAIN:
        return False
    if kind is _COROUTINE or kind in _AWAITABLE:
        return True
    if inspect.isawaitable(value):
        _learn_awaitable(kind)
        return True
    if kind is not AsyncGeneratorType and len(_PLAIN) < 4096:
        _PLAIN.add(kind)
    return False


def _learn_awaitable(kind: type) -> None:
    if kind is not GeneratorType and len(AWAITABLE_TYPES) < 4096:  # bounded, like PLAIN_TYPES
        AWAITABLE_TYPES.add(kind)


def compile_builder(
    provider: ScopedProvider[Any], *, asynchronous: bool
) -> Callable[[ActiveFrame], Any]:
    """Compile ``provider``'s injection plan into one function ``build(frame)``.

    The synchronous builder returns what the factory returned, or an awaitable when an
    injection turned out to be async. The asynchronous one (``asynchronous=True``)
    awaits async injections in place and the factory's awaitable result; its missing
    scoped dependencies wait for creations in flight without blocking the loop. A plan
    with no provider to call but the context gets the synchronous builder instead.
    """
    from userscope.providers._creation import create

    namespace: dict[str, Any] = {
        "MISSING": MISSING,
        "PLAIN": PLAIN_TYPES,
        "awaitable": is_awaitable,
        "create": create,
        "provides": provider._provides,
        "slow": provider._call_factory,
    }
    if not any(how in (CALL, SCOPED) for _, how, _, _ in provider._plan):
        asynchronous = False  # nothing to await but an overridden context: the slow path does
    in_loop = "True" if asynchronous else "False"
    lines: list[str] = []
    values: list[str] = []  # expressions of the values, in plan order
    checked: list[str] = []  # values that may be awaitable
    keys: list[str | None] = []
    for index, (key, how, dependency, core) in enumerate(provider._plan):
        dep, var, cor = f"d{index}", f"v{index}", f"c{index}"
        namespace[dep] = dependency
        namespace[cor] = core
        keys.append(key)
        if how == VALUE:
            values.append(dep)
            continue
        values.append(var)
        if how == CONTEXT:
            lines.append(f"    {var} = frame[0] if not {cor}.overridden else {dep}()")
        elif how == SCOPED:
            assert core is not None  # plan_entry gives every scoped dependency its core
            lines += [
                f"    s = frame[{core.scope}]",
                f"    if s is None or {cor}.overridden:",
                f"        {var} = {dep}()",
                "    else:",
                f"        {var} = s.cache.get({dep}, MISSING)",
                f"        if {var} is MISSING:",
                f"            {var} = create({cor}, s, frame, (), None, {in_loop})",
            ]
        else:
            lines.append(f"    {var} = {dep}()")
        checked.append(var)
        if asynchronous:
            lines += [
                f"    if type({var}) not in PLAIN and awaitable({var}):",
                f"        {var} = await {var}",
            ]
    positional = [v for v, k in zip(values, keys, strict=True) if k is None]
    named = [(k, v) for v, k in zip(values, keys, strict=True) if k is not None]
    args = list(positional)
    odd: list[str] = []
    for key, var in named:
        if key.isidentifier() and not keyword.iskeyword(key):
            args.append(f"{key}={var}")
        else:  # not a valid parameter name (``**{"class": ...}``): pass it in a dict
            odd.append(f"{key!r}: {var}")
    if odd:
        args.append("**{" + ", ".join(odd) + "}")
    call_args = ", ".join(args)
    if asynchronous:
        lines += [
            f"    result = provides({call_args})",
            "    if type(result) not in PLAIN and awaitable(result):",
            "        result = await result",
            "    return result",
        ]
    else:
        if checked:
            plain = " and ".join(f"type({v}) in PLAIN" for v in checked)
            pos_list = "[" + "".join(f"{v}, " for v in positional) + "]"
            named_dict = "{" + ", ".join(f"{k!r}: {v}" for k, v in named) + "}"
            lines += [
                f"    if not ({plain}):",
                f"        return slow({pos_list}, {named_dict})",
            ]
        lines.append(f"    return provides({call_args})")
    header = "async def build(frame):" if asynchronous else "def build(frame):"
    source = header + "\n" + "\n".join(lines) + "\n"
    code = compile(source, f"<userscope builder of {provider.name}>", "exec")
    exec(code, namespace)  # the source holds only plan indices and repr()'d keywords
    builder: Callable[[ActiveFrame], Any] = namespace["build"]
    return builder
