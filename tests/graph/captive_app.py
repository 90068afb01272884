"""A container with captive dependencies, for the graph tests and ``userscope graph``."""

from __future__ import annotations

from dependency_injector import containers, providers

import userscope as us


class Services(containers.DeclarativeContainer):
    context = us.CurrentContext()
    settings = providers.Object({"model": "small"})
    registry = us.UserScoped(dict, owner=context)
    bridge = us.ConnectionScoped(list)
    # transient: followed through, so `cache` holds a registry through it
    agent_factory = providers.Factory(dict, registry=registry, settings=settings)
    cache = providers.Singleton(dict, agents=agent_factory)  # captive: app -> user
    session = us.UserScoped(dict, bridge=bridge)  # captive: user -> connection
    handler = us.RequestScoped(dict, session=session, cache=cache)


class Clean(containers.DeclarativeContainer):
    context = us.CurrentContext()
    registry = us.UserScoped(dict, owner=context)
