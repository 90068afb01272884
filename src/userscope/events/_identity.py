"""Verified identities and keyed stream names derived from them."""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Final

from userscope.context import UserExecutionContext

from ._errors import WeakSecretError

__all__ = ["MIN_SECRET_BYTES", "KeyDeriver", "UserLike", "VerifiedUser", "as_verified"]

MIN_SECRET_BYTES: Final = 32
"""Minimum length of the stream-key HMAC secret, in bytes."""

_TOKEN = object()
_PREFIX_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}(?::[A-Za-z0-9_.-]{1,64}){0,7}")
_DOMAIN = b"userscope.events/v1"


class VerifiedUser:
    """The identity an event stream belongs to, taken from a verified context.

    It can only be built from a :class:`~userscope.UserExecutionContext` (which is
    itself only built from a verified identity), never from a string a client sent.
    The tenant, when present, is ``ctx.metadata["tenant"]`` (a non-empty string).

    Attributes:
        user_id: the context's ``user_id``.
        tenant: the context's tenant, or ``None``.

    Example:
        >>> import userscope as us
        >>> from userscope.events import VerifiedUser
        >>> ctx = us.UserExecutionContext(user_id="alice", thread_id="t-1")
        >>> VerifiedUser.from_context(ctx).user_id
        'alice'
    """

    __slots__ = ("tenant", "user_id")

    user_id: str
    tenant: str | None

    def __init__(self, user_id: str, tenant: str | None, *, _token: object = None) -> None:
        if _token is not _TOKEN:
            raise TypeError(
                "VerifiedUser cannot be built from a bare string; use "
                "VerifiedUser.from_context(ctx) with the verified UserExecutionContext"
            )
        object.__setattr__(self, "user_id", user_id)
        object.__setattr__(self, "tenant", tenant)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("VerifiedUser is immutable")

    @classmethod
    def from_context(cls, ctx: UserExecutionContext) -> VerifiedUser:
        """Take the identity (user id and optional tenant) of a verified context.

        Args:
            ctx: the active :class:`~userscope.UserExecutionContext`.

        Returns:
            The identity whose event stream ``ctx`` may read and write.

        Raises:
            TypeError: ``ctx`` is not a ``UserExecutionContext``, or its
                ``metadata["tenant"]`` is present but not a non-empty string.

        Example:
            >>> import userscope as us
            >>> from userscope.events import VerifiedUser
            >>> ctx = us.UserExecutionContext(
            ...     user_id="bob", thread_id="t", metadata={"tenant": "acme"})
            >>> VerifiedUser.from_context(ctx).tenant
            'acme'
        """
        if not isinstance(ctx, UserExecutionContext):
            raise TypeError(
                f"expected a UserExecutionContext, got {type(ctx).__name__}; event streams are "
                "addressed by verified identity only, never by a client-supplied string"
            )
        tenant = ctx.metadata.get("tenant")
        if tenant is not None and (not isinstance(tenant, str) or not tenant):
            raise TypeError(
                f"ctx.metadata['tenant'] must be a non-empty string or absent, got {tenant!r}"
            )
        return cls(ctx.user_id, tenant, _token=_TOKEN)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, VerifiedUser):
            return NotImplemented
        return (self.user_id, self.tenant) == (other.user_id, other.tenant)

    def __hash__(self) -> int:
        return hash((VerifiedUser, self.user_id, self.tenant))

    def __repr__(self) -> str:
        tenant = "" if self.tenant is None else f", tenant={self.tenant!r}"
        return f"VerifiedUser(user_id={self.user_id!r}{tenant})"


UserLike = UserExecutionContext | VerifiedUser
"""What brokers accept as ``user``: a verified context or the identity taken from one."""


def as_verified(user: UserLike) -> VerifiedUser:
    """Normalise a broker ``user`` argument, refusing anything that is not verified."""
    if isinstance(user, VerifiedUser):
        return user
    return VerifiedUser.from_context(user)


def _field(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


class KeyDeriver:
    """Derives opaque, collision-free stream keys from identities with HMAC-SHA256.

    The key is ``<prefix>:<tenant digest>:<user digest>`` (or ``<prefix>:<user digest>``
    without a tenant); both digests are lowercase hex, so no user text ever reaches a
    key: no wildcards, separators or hash tags can be injected.
    """

    __slots__ = ("_prefix", "_secret")

    def __init__(self, secret: str | bytes, prefix: str) -> None:
        raw = secret.encode() if isinstance(secret, str) else bytes(secret)
        if len(raw) < MIN_SECRET_BYTES:
            raise WeakSecretError(len(raw), MIN_SECRET_BYTES)
        if not _PREFIX_RE.fullmatch(prefix):
            raise ValueError(
                f"key prefix {prefix!r} is not allowed; use 1-8 ':'-separated segments of "
                "letters, digits, '_', '.', '-' (for example 'userscope:events')"
            )
        self._secret = raw
        self._prefix = prefix

    @property
    def prefix(self) -> str:
        """The configured key prefix."""
        return self._prefix

    def user_hash(self, user: VerifiedUser) -> str:
        """Keyed digest of the whole identity (tenant and user id), 64 hex digits."""
        tenant = b"" if user.tenant is None else user.tenant.encode()
        kind = b"t" if user.tenant is not None else b"-"
        msg = _DOMAIN + b"|user|" + kind + _field(tenant) + _field(user.user_id.encode())
        return hmac.new(self._secret, msg, hashlib.sha256).hexdigest()

    def stream_key(self, user: VerifiedUser) -> str:
        """The exact stream key of ``user``."""
        digest = self.user_hash(user)
        if user.tenant is None:
            return f"{self._prefix}:u:{digest}"
        tmsg = _DOMAIN + b"|tenant|" + _field(user.tenant.encode())
        tdigest = hmac.new(self._secret, tmsg, hashlib.sha256).hexdigest()[:32]
        return f"{self._prefix}:t:{tdigest}:u:{digest}"
