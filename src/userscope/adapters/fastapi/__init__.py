"""FastAPI adapter: verified identity in, userscope scopes around every request and WebSocket.

Example:
    >>> from fastapi import FastAPI
    >>> import userscope as us
    >>> from userscope.adapters.fastapi import Inject, JWTAuthenticator, install
"""

from userscope.adapters.identity import IdentityProviderUnavailableError

from ._auth import (
    DEFAULT_THREAD_ID,
    Authenticator,
    ClaimsHook,
    JWTAuthenticator,
    bearer_subprotocol_token,
)
from ._errors import (
    AlreadyInstalledError,
    AuthenticationError,
    AuthenticationRequiredError,
    CredentialsExpiredError,
    CredentialsTooLargeError,
    InvalidClaimError,
    NotInstalledError,
    UnknownSigningKeyError,
)
from ._inject import Inject
from ._install import install
from ._middleware import UserscopeMiddleware
from ._refusals import refusal_close_reason, refusal_response
from ._state import set_credentials_expiry
from ._websocket import message_scope

__all__ = [
    "AlreadyInstalledError",
    "AuthenticationError",
    "AuthenticationRequiredError",
    "Authenticator",
    "ClaimsHook",
    "CredentialsExpiredError",
    "CredentialsTooLargeError",
    "DEFAULT_THREAD_ID",
    "IdentityProviderUnavailableError",
    "Inject",
    "InvalidClaimError",
    "JWTAuthenticator",
    "NotInstalledError",
    "UnknownSigningKeyError",
    "UserscopeMiddleware",
    "bearer_subprotocol_token",
    "install",
    "message_scope",
    "refusal_close_reason",
    "refusal_response",
    "set_credentials_expiry",
]
