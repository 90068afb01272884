"""Scoped providers for dependency-injector containers."""

from userscope.providers._scoped import (
    ConnectionScoped,
    CurrentContext,
    RequestScoped,
    ScopedProvider,
    UserScoped,
)

__all__ = ["ConnectionScoped", "CurrentContext", "RequestScoped", "ScopedProvider", "UserScoped"]
