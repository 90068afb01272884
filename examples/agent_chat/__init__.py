"""Agent-chat demo: two users chat with agents over WebSockets, isolated by userscope.

Example:
    >>> import secrets
    >>> from examples.agent_chat import DemoSettings, create_app
    >>> app = create_app(DemoSettings(secret=secrets.token_urlsafe(32)))
"""

from .app import AUDIENCE, DEMO_USERS, Container, create_app, mint_token
from .domain import DemoSettings, FakeLLM, Tracker

__all__ = [
    "AUDIENCE",
    "Container",
    "DEMO_USERS",
    "DemoSettings",
    "FakeLLM",
    "Tracker",
    "create_app",
    "mint_token",
]
