"""Connection bookkeeping keyed by connection id."""

from collections import defaultdict


class WebSocketConnectionPool:
    def __init__(self):
        self._user_connections = defaultdict(list)

    def add(self, connection_id, websocket):
        self._user_connections[connection_id].append(websocket)

    def remove(self, connection_id):
        self._user_connections.pop(connection_id, None)
