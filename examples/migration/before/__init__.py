"""The legacy chat backend: per-user state in process-wide singletons.

The same shapes as the audit fixture in tests/audit/legacy_backend: a module-level
`global_registry`, a `get_registry()` accessor and a lazy
`get_agent_websocket_bridge()`. Two users connected at once see each other's data.
"""
