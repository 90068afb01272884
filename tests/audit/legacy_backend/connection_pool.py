"""Connection pool singleton built with `_instance` and `__new__`."""

from __future__ import annotations

import threading
from typing import Any


class WebSocketConnectionPool:
    _instance: WebSocketConnectionPool | None = None
    _lock = threading.Lock()

    def __new__(cls) -> WebSocketConnectionPool:
        with cls._lock:
            if cls._instance is None:
                cls._instance = super().__new__(cls)
                cls._instance.sockets = {}
        return cls._instance

    def add(self, user_id: str, socket: Any) -> None:
        self.sockets.setdefault(user_id, []).append(socket)
