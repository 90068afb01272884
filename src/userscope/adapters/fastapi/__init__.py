"""FastAPI adapter: verified identity in, userscope scopes around every request and WebSocket.

Example:
    >>> from fastapi import FastAPI
    >>> import userscope as us
    >>> from userscope.adapters.fastapi import Inject, JWTAuthenticator, install
"""

from ._auth import Authenticator, JWTAuthenticator, bearer_subprotocol_token
from ._errors import (
    AuthenticationError,
    AuthenticationRequiredError,
    CredentialsExpiredError,
    NotInstalledError,
)
from ._inject import Inject
from ._install import install
from ._middleware import UserscopeMiddleware
from ._state import set_credentials_expiry
from ._websocket import message_scope

__all__ = [
    "AuthenticationError",
    "AuthenticationRequiredError",
    "Authenticator",
    "CredentialsExpiredError",
    "Inject",
    "JWTAuthenticator",
    "NotInstalledError",
    "UserscopeMiddleware",
    "bearer_subprotocol_token",
    "install",
    "message_scope",
    "set_credentials_expiry",
]
