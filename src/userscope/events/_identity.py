"""Verified identities and keyed stream names derived from them."""

from __future__ import annotations

import hashlib
import hmac
import re

from userscope._secrets import MIN_SECRET_BYTES, weakness
from userscope.context import UserExecutionContext

from ._errors import WeakSecretError

__all__ = ["MIN_SECRET_BYTES", "KeyDeriver", "UserLike", "VerifiedUser", "as_verified"]


_TOKEN = object()
_PREFIX_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}(?::[A-Za-z0-9_.-]{1,64}){0,7}")
_DOMAIN = b"userscope.events/v1"


class VerifiedUser:
    """The identity an event stream belongs to, taken from a verified context.

    It can only be built from a :class:`~userscope.UserExecutionContext` (which is
    itself only built from a verified identity), never from a string a client sent.
    The identity is the context's ``(tenant_id, user_id)``: the tenant comes from
    ``ctx.tenant_id`` and nowhere else (``ctx.metadata`` is never read for it).

    Attributes:
        user_id: the context's ``user_id``.
        tenant_id: the context's ``tenant_id``, or ``None`` (a single-tenant app).

    Example:
        >>> import userscope as us
        >>> from userscope.events import VerifiedUser
        >>> ctx = us.UserExecutionContext(user_id="alice", thread_id="t-1")
        >>> VerifiedUser.from_context(ctx).user_id
        'alice'
    """

    __slots__ = ("tenant_id", "user_id")

    user_id: str
    tenant_id: str | None

    def __init__(self, user_id: str, tenant_id: str | None, *, _token: object = None) -> None:
        if _token is not _TOKEN:
            raise TypeError(
                "VerifiedUser cannot be built from a bare string; use "
                "VerifiedUser.from_context(ctx) with the verified UserExecutionContext"
            )
        object.__setattr__(self, "user_id", user_id)
        object.__setattr__(self, "tenant_id", tenant_id)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("VerifiedUser is immutable")

    @classmethod
    def from_context(cls, ctx: UserExecutionContext) -> VerifiedUser:
        """Take the identity (``tenant_id`` and ``user_id``) of a verified context.

        Args:
            ctx: the active :class:`~userscope.UserExecutionContext`.

        Returns:
            The identity whose event stream ``ctx`` may read and write.

        Raises:
            TypeError: ``ctx`` is not a ``UserExecutionContext``, or it still carries a
                ``metadata["tenant"]`` that differs from ``ctx.tenant_id`` (the tenant
                lives in ``tenant_id`` only; move it there).

        Example:
            >>> import userscope as us
            >>> from userscope.events import VerifiedUser
            >>> ctx = us.UserExecutionContext(user_id="bob", thread_id="t", tenant_id="acme")
            >>> VerifiedUser.from_context(ctx).tenant_id
            'acme'
        """
        if not isinstance(ctx, UserExecutionContext):
            raise TypeError(
                f"expected a UserExecutionContext, got {type(ctx).__name__}; event streams are "
                "addressed by verified identity only, never by a client-supplied string"
            )
        legacy = ctx.metadata.get("tenant", ctx.tenant_id)
        if legacy != ctx.tenant_id:
            # before tenant_id existed the events layer read metadata["tenant"]; silently
            # ignoring it now would merge the streams of same-named users of two tenants
            raise TypeError(
                f"ctx.metadata['tenant'] is {legacy!r} but ctx.tenant_id is {ctx.tenant_id!r}; "
                "the tenant of an event stream is ctx.tenant_id only: build the context "
                "with UserExecutionContext(..., tenant_id=...) and drop metadata['tenant']"
            )
        return cls(ctx.user_id, ctx.tenant_id, _token=_TOKEN)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, VerifiedUser):
            return NotImplemented
        return (self.user_id, self.tenant_id) == (other.user_id, other.tenant_id)

    def __hash__(self) -> int:
        return hash((VerifiedUser, self.user_id, self.tenant_id))

    def __repr__(self) -> str:
        tenant = "" if self.tenant_id is None else f", tenant_id={self.tenant_id!r}"
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
        problem = weakness(raw)
        if problem is not None:
            raise WeakSecretError(len(raw), MIN_SECRET_BYTES, problem)
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
        tenant = b"" if user.tenant_id is None else user.tenant_id.encode()
        kind = b"t" if user.tenant_id is not None else b"-"
        msg = _DOMAIN + b"|user|" + kind + _field(tenant) + _field(user.user_id.encode())
        return hmac.new(self._secret, msg, hashlib.sha256).hexdigest()

    def stream_key(self, user: VerifiedUser) -> str:
        """The exact stream key of ``user``."""
        digest = self.user_hash(user)
        if user.tenant_id is None:
            return f"{self._prefix}:u:{digest}"
        tmsg = _DOMAIN + b"|tenant|" + _field(user.tenant_id.encode())
        tdigest = hmac.new(self._secret, tmsg, hashlib.sha256).hexdigest()[:32]
        return f"{self._prefix}:t:{tdigest}:u:{digest}"
