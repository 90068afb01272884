"""Choose the broker from the environment: in-memory by default, Redis when configured."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ._errors import WeakSecretError
from ._memory import InMemoryBroker
from ._redis import RedisBroker

if TYPE_CHECKING:
    from ._types import Broker

__all__ = ["ENV_PREFIX", "ENV_REDIS_URL", "ENV_SECRET", "broker_from_env"]

ENV_REDIS_URL = "USERSCOPE_REDIS_URL"
ENV_SECRET = "USERSCOPE_EVENTS_SECRET"
ENV_PREFIX = "USERSCOPE_EVENTS_PREFIX"


def broker_from_env(
    environ: Mapping[str, str] | None = None, **options: Any
) -> InMemoryBroker | RedisBroker:
    """Build the application's broker from environment variables.

    * ``USERSCOPE_REDIS_URL`` unset or empty: an :class:`InMemoryBroker` (one worker).
    * ``USERSCOPE_REDIS_URL=redis://...`` (or ``rediss://`` for TLS): a
      :class:`RedisBroker`; ``USERSCOPE_EVENTS_SECRET`` (32+ bytes, the same on every
      worker) is then required and ``USERSCOPE_EVENTS_PREFIX`` optional.

    Args:
        environ: where to read the variables (default ``os.environ``).
        **options: passed on to the broker (``maxlen``, ``idle_ttl``, heartbeats...).

    Returns:
        The broker; close it with ``await broker.aclose()`` at shutdown.

    Raises:
        WeakSecretError: Redis is configured but the secret is missing or short.

    Example:
        >>> import secrets
        >>> from userscope.events import broker_from_env
        >>> type(broker_from_env({})).__name__
        'InMemoryBroker'
        >>> env = {"USERSCOPE_REDIS_URL": "redis://127.0.0.1:6379/0",
        ...        "USERSCOPE_EVENTS_SECRET": secrets.token_hex(32)}
        >>> type(broker_from_env(env)).__name__
        'RedisBroker'
    """
    env = os.environ if environ is None else environ
    url = env.get(ENV_REDIS_URL, "").strip()
    if not url:
        return InMemoryBroker(**options)
    secret = env.get(ENV_SECRET, "")
    if not secret:
        raise WeakSecretError(0, 32)
    prefix = env.get(ENV_PREFIX, "").strip()
    if prefix:
        options.setdefault("key_prefix", prefix)
    return RedisBroker(url, secret=secret, **options)


if TYPE_CHECKING:  # static proof that both brokers satisfy the Broker protocol

    def _conforms(memory: InMemoryBroker, redis: RedisBroker) -> tuple[Broker, Broker]:
        return memory, redis
