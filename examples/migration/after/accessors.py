"""The old accessor names, now legacy shims over the scoped providers."""

from __future__ import annotations

import os

from userscope.adapters import legacy

from . import old_singletons
from .container import Container

MODE = os.environ.get("CHAT_LEGACY_ACCESSOR_MODE", "warn")

get_registry = legacy.accessor(
    Container.registry,
    name="get_registry",
    fallback=old_singletons.get_registry,
    mode=MODE,
)
get_agent_websocket_bridge = legacy.accessor(
    Container.bridge,
    name="get_agent_websocket_bridge",
    fallback=old_singletons.get_agent_websocket_bridge,
    mode=MODE,
)
