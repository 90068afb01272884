"""Process-wide switches the hot paths read as one module global each."""

from __future__ import annotations

__all__ = ["observing"]

observing: bool = False
"""Set once any ``UserSessions`` got an observer: only then does the creation path look
up its runtime's observer (one global test per creation otherwise)."""
