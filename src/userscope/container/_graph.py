"""`graph(container)`: a picture of a container, in Mermaid or Graphviz dot.

Providers are nodes coloured by lifetime, edges go from a provider to what it depends on,
and every captive dependency path :func:`~userscope.validate` reports is drawn in red
with the same text. The traversal is validation's own (``_validate.captive_routes``).
"""

from __future__ import annotations

import itertools
from collections import deque
from typing import Any, Literal

from dependency_injector import providers

from userscope.container._validate import (
    _dependencies,
    _effective,
    _level,
    captive_routes,
    collect,
    label,
)
from userscope.errors import GraphFormatError

__all__ = ["graph"]

FORMATS = ("mermaid", "dot")
CAPTIVE = "#d62728"
# lifetime -> (fill, border): app singleton, user, connection, request, transient
STYLES = {
    "app": ("#d9d9d9", "#636363"),
    "user": ("#9ecae1", "#3182bd"),
    "connection": ("#a1d99b", "#31a354"),
    "request": ("#fdd0a2", "#e6550d"),
    "transient": ("#ffffff", "#969696"),
}
_LIFETIME = {None: "transient", 1: "request", 2: "connection", 3: "user", 4: "app"}
LEGEND = (
    "grey: app singleton, blue: user, green: connection, orange: request, "
    "white: transient; red: captive dependency"
)


class _Graph:
    """Nodes, edges and captive paths of one container."""

    def __init__(self, container: Any) -> None:
        roots, self.names = collect(container)
        self.title = next(iter(self.names.values()), "container").split(".")[0]
        self.nodes: list[Any] = []
        self.index: dict[int, int] = {}
        # (from, to, overridden?) in discovery order
        self.edges: list[tuple[int, int, bool]] = []
        queue: deque[Any] = deque()

        def add(provider: Any) -> int:
            found = self.index.get(id(provider))
            if found is None:
                found = self.index[id(provider)] = len(self.nodes)
                self.nodes.append(provider)
                queue.append(provider)
            return found

        for root in roots:
            if not isinstance(root, providers.Self):  # the container itself: drawn if used
                add(root)
        seen_edges: set[tuple[int, int, bool]] = set()
        while queue:
            provider = queue.popleft()
            effective = _effective(provider)
            if effective is not provider:  # validation follows the override: so do we
                targets = [(effective, True)]
            else:
                targets = [(dep, False) for dep in _dependencies(provider)]
            for target, overridden in targets:
                edge = (self.index[id(provider)], add(target), overridden)
                if edge not in seen_edges:
                    seen_edges.add(edge)
                    self.edges.append(edge)
        self.captive: list[str] = []
        self.red: set[tuple[int, int]] = set()
        for path, text in captive_routes(container):
            self.captive.append(text)
            for before, after in itertools.pairwise(path):
                pair = (add(before), add(after))
                self.red.add(pair)
                if not any(e[:2] == pair for e in self.edges):  # pragma: no cover - defensive
                    self.edges.append((*pair, False))
        self.captive.sort()

    def name(self, provider: Any) -> str:
        """The declared name, or for an inline provider what it does (``.provided``)."""
        if isinstance(provider, providers.Self):
            return "(the container)"
        if id(provider) in self.names:
            return self.names[id(provider)]
        if isinstance(provider, providers.ProvidedInstance):
            return ".provided"
        if isinstance(provider, providers.AttributeGetter):
            return f".{provider.name}"
        if isinstance(provider, providers.ItemGetter):
            return f"[{provider.name!r}]"
        if isinstance(provider, providers.MethodCaller):
            return "()"
        full = label(provider, self.names)  # "<inline Kind(factory)> (Kind)"
        return full.rsplit(" (", 1)[0]

    def kind(self, provider: Any) -> str:
        if isinstance(provider, providers.Object) and not providers.is_provider(provider.provides):
            return "Object"
        return type(provider).__name__

    def lifetime(self, provider: Any) -> str:
        return _LIFETIME[_level(provider)]


def _mermaid_text(text: str) -> str:
    return text.replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")


def _mermaid(g: _Graph) -> str:
    lines = ["flowchart LR", f"    %% userscope graph of {g.title}; {LEGEND}"]
    lines += [f"    %% captive: {text}" for text in g.captive]
    for number, provider in enumerate(g.nodes):
        text = f"{_mermaid_text(g.name(provider))}<br/><i>{g.kind(provider)}</i>"
        lines.append(f'    n{number}["{text}"]')
    red: list[str] = []
    for position, (source, target, overridden) in enumerate(g.edges):
        arrow = "-. overridden by .->" if overridden else "-->"
        lines.append(f"    n{source} {arrow} n{target}")
        if (source, target) in g.red:
            red.append(str(position))
    for lifetime, (fill, border) in STYLES.items():
        dashed = ",stroke-dasharray:4 3" if lifetime == "transient" else ""
        lines.append(f"    classDef {lifetime} fill:{fill},stroke:{border},color:#000{dashed}")
    for lifetime in STYLES:
        members = [f"n{i}" for i, p in enumerate(g.nodes) if g.lifetime(p) == lifetime]
        if members:
            lines.append(f"    class {','.join(members)} {lifetime}")
    if red:
        lines.append(f"    linkStyle {','.join(red)} stroke:{CAPTIVE},stroke-width:3px")
    return "\n".join(lines) + "\n"


def _dot_text(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _dot(g: _Graph) -> str:
    caption = [f"userscope graph of {g.title}", LEGEND]
    caption += [f"captive: {text}" for text in g.captive]
    lines = [
        "digraph userscope {",
        "    rankdir=LR;",
        '    graph [fontname="Helvetica", fontsize=10, labelloc=b, labeljust=l,',
        '           label="' + "".join(_dot_text(line) + "\\l" for line in caption) + '"];',
        '    node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=11];',
        '    edge [color="#636363"];',
    ]
    for number, provider in enumerate(g.nodes):
        fill, border = STYLES[g.lifetime(provider)]
        style = ', style="rounded,filled,dashed"' if g.lifetime(provider) == "transient" else ""
        text = f"{_dot_text(g.name(provider))}\\n{g.kind(provider)}"
        lines.append(
            f'    n{number} [label="{text}", fillcolor="{fill}", color="{border}"{style}];'
        )
    for source, target, overridden in g.edges:
        attrs: list[str] = []
        if overridden:
            attrs += ["style=dashed", 'label="overridden by"']
        if (source, target) in g.red:
            attrs += [f'color="{CAPTIVE}"', "penwidth=2.5"]
        suffix = f" [{', '.join(attrs)}]" if attrs else ""
        lines.append(f"    n{source} -> n{target}{suffix};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def graph(container: Any, format: Literal["mermaid", "dot"] = "mermaid") -> str:
    """Draw a container: providers coloured by lifetime, dependency edges, captives in red.

    Colours: grey app singletons (``Singleton``, ``Resource``...), blue USER, green
    CONNECTION, orange REQUEST, white (dashed) transient providers. Each captive
    dependency :func:`~userscope.validate` would report is drawn in red and listed
    with the same path text (a comment in Mermaid, the caption in dot).

    Args:
        container: a ``DeclarativeContainer`` class or a container instance.
        format: ``"mermaid"`` (a ``flowchart``) or ``"dot"`` (Graphviz).

    Raises:
        GraphFormatError: ``format`` is neither.
        TypeError: ``container`` is not a dependency-injector container.

    Example:
        >>> import userscope as us
        >>> from dependency_injector import containers, providers
        >>> class C(containers.DeclarativeContainer):
        ...     registry = us.UserScoped(dict)
        ...     llm = providers.Singleton(dict, registry=registry)
        >>> print(us.graph(C).splitlines()[2])
            %% captive: C.llm (Singleton) -> C.registry (UserScoped)
        >>> us.graph(C, format="dot").startswith("digraph userscope {")
        True
    """
    if format not in FORMATS:
        raise GraphFormatError(format, FORMATS)
    # dependency_injector.containers.is_container, without importing that module: it imports
    # dependency_injector.wiring, which imports FastAPI when installed (import userscope
    # must stay light)
    if not getattr(container, "__IS_CONTAINER__", False):
        raise TypeError(
            f"graph() takes a dependency-injector container class or instance, got "
            f"{type(container).__name__}"
        )
    drawn = _Graph(container)
    return _mermaid(drawn) if format == "mermaid" else _dot(drawn)
