"""The ``userscope`` command: ``--version``, ``graph`` and ``audit``.

Exit status everywhere: 0 ok, 1 errors (error-severity audit findings, captive
dependencies in a graph), 2 usage errors (bad option, target that does not import);
``audit`` ranks the rest: 3 when its worst finding is a warning, 4 a note.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dependency_injector import containers

import userscope
from userscope.container._graph import FORMATS, graph
from userscope.container._validate import captive_paths

__all__ = ["main"]

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_USAGE = 2

_EPILOG = (
    "exit status: 0 ok, 1 errors (audit findings of severity error, captive dependencies), "
    "2 usage error; audit also uses 3 (warnings at most) and 4 (notes at most)."
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="userscope",
        description="userscope command line tools.",
        epilog=_EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"userscope {userscope.__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    drawing = commands.add_parser(
        "graph",
        help="draw a container: providers by scope, dependencies, captive paths in red",
        description=(
            "Draw a dependency-injector container as Mermaid or Graphviz dot: providers "
            "coloured by scope (app singleton, user, connection, request, transient), "
            "dependency edges, and every captive dependency validate() reports in red."
        ),
        epilog="exit status: 0 drawn, 1 drawn but captive dependencies found, 2 usage error.",
    )
    drawing.add_argument(
        "target", metavar="MODULE:CONTAINER", help="e.g. myapp.container:Container"
    )
    drawing.add_argument(
        "--format", choices=FORMATS, default="mermaid", help="output format (default: mermaid)"
    )
    drawing.add_argument("-o", "--output", type=Path, help="write to this file, not stdout")
    commands.add_parser(
        "audit",
        help="find module-level singletons and per-user state shared between users",
        add_help=False,  # `userscope audit --help` is the audit command's own help
        prefix_chars="\0",  # every argument after `audit` goes to the audit command
    ).add_argument("rest", nargs=argparse.REMAINDER)
    return parser


def _usage(command: str, message: str) -> int:
    print(f"userscope {command}: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def _load(target: str) -> Any:
    """Import ``module:attr.attr`` (the current directory is importable, as for uvicorn)."""
    module_name, sep, attribute = target.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"{target!r} is not MODULE:CONTAINER (e.g. myapp.container:Container)")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        found: Any = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(f"cannot import {module_name!r}: {err}") from err
    for part in attribute.split("."):
        try:
            found = getattr(found, part)
        except AttributeError:
            raise ValueError(f"{module_name!r} has no attribute {attribute!r}") from None
    if not containers.is_container(found):
        raise ValueError(
            f"{target} is a {type(found).__name__}, not a dependency-injector container"
        )
    return found


def _graph(args: argparse.Namespace) -> int:
    try:
        container = _load(args.target)
    except ValueError as err:
        return _usage("graph", str(err))
    text = graph(container, format=args.format)
    if args.output is not None:
        try:
            args.output.write_text(text, encoding="utf-8")
        except OSError as err:
            return _usage("graph", f"{args.output}: cannot write ({err.strerror})")
    else:
        sys.stdout.write(text)
    captives = captive_paths(container)
    for path in captives:
        print(f"userscope graph: captive dependency: {path}", file=sys.stderr)
    return EXIT_PROBLEMS if captives else EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``userscope`` command line and return its exit status.

    Args:
        argv: the arguments after the program name (``sys.argv[1:]`` when omitted).

    Returns:
        0 ok, 1 errors (error-severity audit findings, captive dependencies), 2 usage
        error; ``audit`` also returns 3 when its worst finding is a warning, 4 a note.

    Example:
        >>> from userscope._cli import main
        >>> main(["--version"])
        userscope 0.1.0
        0
    """
    args_list = list(sys.argv[1:] if argv is None else argv)
    try:
        args = _parser().parse_args(args_list)
    except SystemExit as exit_:  # --help, --version, or a usage error
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    if args.command == "audit":
        from userscope.audit._cli import main as audit_main

        return audit_main(["audit", *args.rest])
    return _graph(args)
