"""Identity from real identity providers: OIDC discovery, JWKS keys, algorithm and secret checks.

`userscope.adapters.fastapi.JWTAuthenticator` uses this package; import from here
the errors it raises at construction or while the provider is down, and the
checks to reuse for your own secrets.

Example:
    >>> from userscope.adapters.identity import check_hmac_secret
    >>> import secrets
    >>> check_hmac_secret(secrets.token_urlsafe(32))
"""

from ._errors import (
    AlgorithmKeyMismatchError,
    IdentityProviderUnavailableError,
    OIDCDiscoveryError,
    WeakKeyError,
)
from ._jwks import JWKSKeySet
from ._keys import check_hmac_secret, check_key_for_algorithms

__all__ = [
    "AlgorithmKeyMismatchError",
    "IdentityProviderUnavailableError",
    "JWKSKeySet",
    "OIDCDiscoveryError",
    "WeakKeyError",
    "check_hmac_secret",
    "check_key_for_algorithms",
]
