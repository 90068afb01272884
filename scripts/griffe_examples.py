"""Griffe extension for the API reference: render the docstrings as they are written.

The docstrings use Google style with a singular ``Example:`` heading; griffe only
knows ``Examples:`` and renders anything else as an admonition of plain text, where
``>>>`` lines would turn into nested quotes. They also use Sphinx roles
(``:class:`UserSessions```) that Markdown shows literally. :func:`rewrite` fixes both
before griffe parses a docstring, so examples render as Python sessions and roles as
code. Loaded by ``mkdocs.yml`` (``extensions: [scripts/griffe_examples.py]``).
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_HEADING = re.compile(r"^(\s*)Example:[ \t]*$", re.MULTILINE)
_ROLE = re.compile(r":(?:class|meth|func|attr|data|exc|mod|obj):`~?([^`]+)`")


def rewrite(text: str) -> str:
    """``Example:`` headings become ``Examples:``; Sphinx roles become inline code.

    Examples:
        >>> rewrite("See :class:`UserSessions`.\\n\\nExample:\\n    >>> 1\\n")
        'See `UserSessions`.\\n\\nExamples:\\n    >>> 1\\n'
    """
    return _ROLE.sub(r"`\1`", _HEADING.sub(r"\1Examples:", text))


class SingularExampleHeading(griffe.Extension):
    """Apply :func:`rewrite` to every docstring before it is parsed."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        """Rewrite ``obj``'s docstring as soon as the object exists (packages too)."""
        self.on_object(obj=obj)

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        """Rewrite ``obj``'s docstring, if it has one (idempotent)."""
        if obj.docstring is not None:
            obj.docstring.value = rewrite(obj.docstring.value)
