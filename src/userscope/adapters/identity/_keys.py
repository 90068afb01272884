"""Which algorithms fit which keys, and HMAC secrets that are too weak to sign with."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from userscope._secrets import MIN_SECRET_BYTES, weakness

from ._errors import AlgorithmKeyMismatchError, WeakKeyError

__all__ = [
    "ASYMMETRIC_ALGORITHMS",
    "HMAC_ALGORITHMS",
    "MIN_HMAC_KEY_BYTES",
    "check_algorithms",
    "check_hmac_secret",
    "check_key_for_algorithms",
    "is_private_key",
    "key_fits_algorithm",
]

HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
"""Symmetric algorithms: the verifier holds the signing secret."""

_RSA = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
_EC_CURVES = {
    "ES256": "secp256r1",
    "ES256K": "secp256k1",
    "ES384": "secp384r1",
    "ES512": "secp521r1",
}
_EDDSA = frozenset({"EdDSA"})

ASYMMETRIC_ALGORITHMS = _RSA | frozenset(_EC_CURVES) | _EDDSA
"""Public-key algorithms: the verifier holds only the public key."""

MIN_HMAC_KEY_BYTES = MIN_SECRET_BYTES
"""Shortest accepted HMAC secret (RFC 7518 section 3.2: at least the hash size)."""


def check_algorithms(algorithms: Sequence[str]) -> tuple[str, ...]:
    """Return ``algorithms`` as a tuple after refusing empty, unknown and ``none``.

    Raises:
        ValueError: no algorithm, ``"none"``, or a name PyJWT does not know.

    Example:
        >>> from userscope.adapters.identity._keys import check_algorithms
        >>> check_algorithms(["RS256", "ES256"])
        ('RS256', 'ES256')
    """
    if isinstance(algorithms, str):
        raise TypeError(f"algorithms must be a list of names, e.g. [{algorithms!r}]")
    names = tuple(algorithms)
    if not names:
        raise ValueError("JWTAuthenticator needs at least one algorithm, e.g. ['HS256']")
    if any(a.lower() == "none" for a in names):
        raise ValueError("JWTAuthenticator refuses the 'none' algorithm: tokens must be signed")
    unknown = [a for a in names if a not in HMAC_ALGORITHMS | ASYMMETRIC_ALGORITHMS]
    if unknown:
        raise ValueError(
            f"unknown JWT algorithm(s) {unknown!r}; use names from RFC 7518/8037: "
            f"{sorted(HMAC_ALGORITHMS | ASYMMETRIC_ALGORITHMS)}"
        )
    mixed = {a for a in names if a in HMAC_ALGORITHMS} and {
        a for a in names if a in ASYMMETRIC_ALGORITHMS
    }
    if mixed:
        raise AlgorithmKeyMismatchError(
            names,
            "one key",
            "symmetric (HS*) and asymmetric algorithms cannot share a key: a public key "
            "would double as an HMAC secret that anyone can read",
        )
    return names


def check_hmac_secret(secret: str | bytes) -> None:
    """Refuse an HMAC secret shorter than 32 bytes or obviously low in entropy.

    "Obviously low" means: fewer than 8 distinct bytes, one short unit repeated
    over the whole secret, or under ~80 bits by a letter-frequency estimate (a
    random 32-byte secret scores about 150). It cannot prove a secret random;
    it catches ``"k" * 32``, 32 spaces and ``"secret" * 6``.

    Args:
        secret: the shared secret, text (UTF-8) or bytes.

    Raises:
        WeakKeyError: the secret is too short or guessable; the message says how
            to generate a good one.

    Example:
        >>> from userscope.adapters.identity import check_hmac_secret
        >>> import secrets
        >>> check_hmac_secret(secrets.token_urlsafe(32))
        >>> check_hmac_secret(" " * 32)
        Traceback (most recent call last):
        ...
        userscope.adapters.identity._errors.WeakKeyError: the HMAC secret is refused: ...
    """
    raw = secret.encode() if isinstance(secret, str) else bytes(secret)
    problem = weakness(raw)
    if problem is not None:
        raise WeakKeyError(length=len(raw), problem=problem)


def key_fits_algorithm(key: Any, algorithm: str) -> bool:
    """Whether a loaded public key object can verify ``algorithm`` (RSA, curve, EdDSA).

    Example:
        >>> from userscope.adapters.identity._keys import key_fits_algorithm
        >>> from cryptography.hazmat.primitives.asymmetric import ec
        >>> public = ec.generate_private_key(ec.SECP256R1()).public_key()
        >>> key_fits_algorithm(public, "ES256"), key_fits_algorithm(public, "ES384")
        (True, False)
    """
    if algorithm in _RSA:
        return isinstance(key, rsa.RSAPublicKey | rsa.RSAPrivateKey)
    if algorithm in _EC_CURVES:
        if not isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey):
            return False
        return bool(key.curve.name == _EC_CURVES[algorithm])
    if algorithm in _EDDSA:
        return isinstance(
            key,
            ed25519.Ed25519PublicKey
            | ed25519.Ed25519PrivateKey
            | ed448.Ed448PublicKey
            | ed448.Ed448PrivateKey,
        )
    return False


def _describe(key: Any) -> str:
    if isinstance(key, rsa.RSAPublicKey | rsa.RSAPrivateKey):
        return "RSA key"
    if isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey):
        return f"EC key on {key.curve.name}"
    if isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return "EdDSA key"
    return type(key).__name__


def check_key_for_algorithms(key: Any, algorithms: Sequence[str]) -> None:
    """Refuse a static key that cannot verify every one of ``algorithms``.

    ``HS*`` needs a shared secret (``str``/``bytes``, not a PEM or SSH public
    key, strong enough for :func:`check_hmac_secret`); ``RS*``/``PS*`` an RSA key;
    ``ES256``/``ES384``/``ES512`` an EC key on P-256/P-384/P-521; ``EdDSA`` an
    Ed25519/Ed448 key. Keys are loaded with PyJWT's own loaders.

    Raises:
        AlgorithmKeyMismatchError: some algorithm does not fit the key.
        WeakKeyError: an HMAC secret is too weak.

    Example:
        >>> from userscope.adapters.identity import check_key_for_algorithms
        >>> from cryptography.hazmat.primitives.asymmetric import ec
        >>> public = ec.generate_private_key(ec.SECP256R1()).public_key()
        >>> check_key_for_algorithms(public, ["ES256"])
        >>> check_key_for_algorithms(public, ["RS256"])
        Traceback (most recent call last):
        ...
        userscope.adapters.identity._errors.AlgorithmKeyMismatchError: algorithms ['RS256'] ...
    """
    names = check_algorithms(algorithms)
    if names[0] in HMAC_ALGORITHMS:
        if not isinstance(key, str | bytes):
            raise AlgorithmKeyMismatchError(
                names, _describe(key), "HS* needs a shared secret (str or bytes)"
            )
        for name in names:
            try:
                jwt.get_algorithm_by_name(name).prepare_key(key)
            except jwt.InvalidKeyError as exc:
                raise AlgorithmKeyMismatchError(
                    names,
                    "a public key or certificate",
                    "HS* would use the public key's text as the HMAC secret; "
                    "verify RS*/ES* tokens with the public key and asymmetric algorithms",
                ) from exc
        check_hmac_secret(key)
        return
    for name in names:
        try:
            loaded = jwt.get_algorithm_by_name(name).prepare_key(key)
        except (jwt.InvalidKeyError, ValueError, TypeError) as exc:
            raise AlgorithmKeyMismatchError(
                names,
                _describe(key) if not isinstance(key, str | bytes) else "text that is not a key",
                f"{name} needs a public key it can load (PEM, SSH or a key object)",
            ) from exc
        if not key_fits_algorithm(loaded, name):
            raise AlgorithmKeyMismatchError(
                names, _describe(loaded), f"{name} cannot be verified with this key"
            )
        if is_private_key(loaded):
            raise AlgorithmKeyMismatchError(
                names,
                f"private {_describe(loaded)}",
                "a verifier needs only the public key; pass key.public_key() (or the PEM "
                "'PUBLIC KEY' block) and keep the private key with the token issuer",
            )


def is_private_key(key: Any) -> bool:
    """Whether ``key`` is a private key object (RSA, EC or EdDSA).

    Example:
        >>> from userscope.adapters.identity._keys import is_private_key
        >>> from cryptography.hazmat.primitives.asymmetric import ed25519
        >>> private = ed25519.Ed25519PrivateKey.generate()
        >>> is_private_key(private), is_private_key(private.public_key())
        (True, False)
    """
    return isinstance(
        key,
        rsa.RSAPrivateKey
        | ec.EllipticCurvePrivateKey
        | ed25519.Ed25519PrivateKey
        | ed448.Ed448PrivateKey,
    )
