"""Redis Streams broker: per-user delivery across worker processes and hosts."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from userscope._durations import Duration, to_seconds
from userscope._log import fields as log_fields

from ._base import BrokerBase
from ._errors import BrokerUnavailableError, SubscriptionFailedError
from ._identity import KeyDeriver, UserLike, as_verified
from ._json import encode_event
from ._runs import check_heartbeat
from ._subscription import DEFAULT_BUFFER_BYTES, Lost, Record, Subscription
from ._types import BEGINNING, BrokerStats, id_key

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["RedisBroker"]

logger = logging.getLogger("userscope.events")

# Appends one envelope atomically: reads the id of the previous event (for gap
# detection), adds the entry with approximate trimming and refreshes the idle expiry.
_PUBLISH_LUA = """
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local prev = '0-0'
if last[1] then prev = last[1][1] end
local id = redis.call(
  'XADD', KEYS[1], 'MAXLEN', ARGV[5], ARGV[1], '*', 'u', ARGV[2], 'p', prev, 'd', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return id
"""

_WAKE_TTL_MS = 120_000

CLIENT_NAME = "userscope-events"
"""``CLIENT SETNAME`` of every broker connection (visible in ``CLIENT LIST``)."""


@dataclass(slots=True)
class _Watch:
    cursor: str
    subs: set[Subscription] = field(default_factory=set)
    # the last XREAD reply held fewer than read_count entries of this stream: the
    # reader had everything Redis stored for it when it last heard from Redis
    drained: bool = False


def _record(event_id: str, fields: Mapping[str, str]) -> Record:
    data = fields.get("d", "")
    return Record(
        id=event_id,
        prev=fields.get("p", ""),
        owner=fields.get("u", ""),
        data=data,
        size=len(data.encode()),
    )


def _is_connection_error(exc: BaseException) -> bool:
    """Whether ``exc`` means "Redis is unreachable" (reconnect) rather than a refusal."""
    import redis.exceptions as redis_errors

    return isinstance(exc, redis_errors.ConnectionError | redis_errors.TimeoutError | OSError)


def _entries(raw: Any) -> list[tuple[str, dict[str, str]]]:
    """Normalise a stream reply (``decode_responses=True``) to ``[(id, fields)]``."""
    out: list[tuple[str, dict[str, str]]] = []
    for event_id, fields in raw or ():
        out.append((str(event_id), {str(k): str(v) for k, v in (fields or {}).items()}))
    return out


class RedisBroker(BrokerBase):
    """Per-user event streams on Redis Streams, shared by every worker process.

    Each user's events live in one stream whose key is derived from the verified
    identity with HMAC-SHA256 (``secret``, identical on every worker) under
    ``key_prefix``; no user text ever reaches a key. Each broker instance runs one
    multiplexed blocking ``XREAD`` reader task for all its subscriptions (one per
    worker, not one connection per socket), reconnects with backoff when Redis
    restarts, resumes every subscription from its last id and reports a
    :class:`Gap` if history was lost. A Redis error about one subscription's stream
    fails that subscription alone (:class:`SubscriptionFailedError`); the reader
    keeps serving the others. Publishes retry on connection errors with redis-py's
    ``Retry`` and backoff, so the first publishes after a Redis restart succeed.

    Every duration takes seconds or a ``datetime.timedelta``.

    Args:
        url: ``redis://`` or ``rediss://`` (TLS) URL, credentials included.
        secret: HMAC key for stream names, at least 32 bytes (``WeakSecretError``).
        key_prefix: namespace of every key (grant the ACL user ``~<prefix>:*``).
        maxlen: events kept per user (``MAXLEN ~``: Redis may keep up to one
            stream node, 100 entries by default, more).
        exact_trim: use exact ``MAXLEN`` instead of ``~`` (slower).
        idle_ttl: seconds without a publish after which a user's stream expires.
        socket_timeout: client socket timeout in seconds.
        block_timeout: seconds one ``XREAD BLOCK`` waits; must be below ``socket_timeout``.
        read_count: entries read per stream per ``XREAD``.
        max_event_bytes: largest encoded event accepted.
        buffer_limit: envelopes buffered per subscription before it re-reads history.
        buffer_bytes: bytes of event JSON buffered per subscription before it
            re-reads history.
        heartbeat_interval: default seconds between run heartbeats.
        heartbeat_timeout: default seconds without heartbeat before ``run_lost``.
        reconnect_backoff: (base, cap) seconds of the backoff between reconnection
            attempts of the reader and between publish retries (redis-py's
            ``EqualJitterBackoff``: never more than ``cap``, so subscribers are back
            within about ``cap`` seconds of Redis).
        publish_retries: times a publish is retried after a connection error before
            it raises (a retried publish whose first reply was lost may store the
            event twice, under two ids).
        attach_timeout: seconds a new subscription waits for Redis before
            :class:`BrokerUnavailableError` (the client should retry later).
        max_connections: connections for publishing (publishers queue for a free one);
            the reader always has one more of its own.
        max_batch: most publishes sent together in one pipelined round trip.
        connection_options: extra ``redis.asyncio`` connection arguments, e.g. TLS
            files (``ssl_ca_certs``, ``ssl_certfile``, ``ssl_keyfile``); the broker
            sets ``decode_responses``, timeouts and ``client_name`` itself.

    Example:
        >>> import secrets
        >>> from userscope.events import RedisBroker
        >>> secret = secrets.token_hex(32)  # in production: from your secret store
        >>> broker = RedisBroker("redis://127.0.0.1:6379/0", secret=secret)
        >>> broker.key_prefix
        'userscope:events'
    """

    def __init__(
        self,
        url: str,
        *,
        secret: str | bytes,
        key_prefix: str = "userscope:events",
        maxlen: int = 1000,
        exact_trim: bool = False,
        idle_ttl: Duration = 3600.0,
        socket_timeout: Duration = 10.0,
        block_timeout: Duration = 2.0,
        read_count: int = 512,
        max_event_bytes: int = 1 << 20,
        buffer_limit: int = 10_000,
        buffer_bytes: int = DEFAULT_BUFFER_BYTES,
        heartbeat_interval: Duration = 5.0,
        heartbeat_timeout: Duration = 15.0,
        reconnect_backoff: tuple[Duration, Duration] = (0.05, 0.5),
        publish_retries: int = 3,
        attach_timeout: Duration = 5.0,
        max_connections: int = 32,
        max_batch: int = 128,
        connection_options: Mapping[str, Any] | None = None,
    ) -> None:
        try:
            import redis.asyncio as redis_asyncio
            from redis.asyncio.retry import Retry
            from redis.backoff import EqualJitterBackoff
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError(
                "RedisBroker needs the redis client: pip install 'userscope[redis]'"
            ) from exc
        self._keys = KeyDeriver(secret, key_prefix)
        if maxlen < 1:
            raise ValueError(f"maxlen must be at least 1, got {maxlen}")
        idle_ttl = to_seconds("idle_ttl", idle_ttl)
        socket_timeout = to_seconds("socket_timeout", socket_timeout)
        block_timeout = to_seconds("block_timeout", block_timeout)
        heartbeat_interval = to_seconds("heartbeat_interval", heartbeat_interval)
        heartbeat_timeout = to_seconds("heartbeat_timeout", heartbeat_timeout)
        backoff = (
            to_seconds("reconnect_backoff[0]", reconnect_backoff[0]),
            to_seconds("reconnect_backoff[1]", reconnect_backoff[1]),
        )
        self.attach_timeout = to_seconds("attach_timeout", attach_timeout)
        if publish_retries < 0:
            raise ValueError(f"publish_retries must be 0 or more, got {publish_retries}")
        if buffer_bytes < 1:
            raise ValueError(f"buffer_bytes must be at least 1, got {buffer_bytes}")
        if not block_timeout < socket_timeout:
            raise ValueError(
                f"block_timeout={block_timeout} must be positive and below "
                f"socket_timeout={socket_timeout}, or every idle XREAD would time the "
                "socket out; keep it about half of socket_timeout"
            )
        if min(read_count, buffer_limit, max_connections, max_batch) < 1:
            raise ValueError(
                "read_count, buffer_limit, max_connections and max_batch must be at least 1"
            )
        if not backoff[0] <= backoff[1]:
            raise ValueError("reconnect_backoff must be (base, cap) with 0 < base <= cap")
        check_heartbeat(heartbeat_interval, heartbeat_timeout)
        self.key_prefix = key_prefix
        self.maxlen = maxlen
        self.exact_trim = exact_trim
        self.idle_ttl = idle_ttl
        self.block_timeout = block_timeout
        self.read_count = read_count
        self.max_event_bytes = max_event_bytes
        self.buffer_limit = buffer_limit
        self.buffer_bytes = buffer_bytes
        self.heartbeat_interval = heartbeat_interval
        self.heartbeat_timeout = heartbeat_timeout
        self.publish_retries = publish_retries
        # one backoff policy, redis-py's: for the reader's reconnects and publish retries
        self._backoff = EqualJitterBackoff(cap=backoff[1], base=backoff[0])
        managed = {
            "decode_responses",
            "socket_timeout",
            "socket_connect_timeout",
            "client_name",
            "retry",
            "retry_on_error",
        }
        clash = sorted(managed & set(connection_options or {}))
        if clash:
            raise ValueError(
                f"connection_options may not set {clash}; use the RedisBroker arguments "
                "(socket_timeout, block_timeout, reconnect_backoff, publish_retries) so that "
                "XREAD BLOCK stays below the timeout and the reader sees every reconnect"
            )
        common: dict[str, Any] = {
            **(connection_options or {}),
            "decode_responses": True,
            "socket_timeout": socket_timeout,
            "socket_connect_timeout": min(socket_timeout, 5.0),
            "client_name": CLIENT_NAME,
        }
        # publishers wait for a free connection instead of failing when many run at once;
        # a connection that died with Redis is dropped and re-dialled by redis-py's Retry
        # (supported errors: ConnectionError, TimeoutError), so the first publishes after
        # a restart succeed instead of failing on the pool's dead connections
        pool = redis_asyncio.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=socket_timeout,
            retry=Retry(EqualJitterBackoff(cap=backoff[1], base=backoff[0]), publish_retries),
            **common,
        )
        self._client: Redis = redis_asyncio.Redis.from_pool(pool)
        # the reader has a connection of its own: a burst of publishers never starves it.
        # It never retries inside a command: a broken XREAD must reach the read loop,
        # which re-checks every stream for lost history before reading again
        self._reader_client: Redis = redis_asyncio.Redis.from_url(
            url, retry=Retry(EqualJitterBackoff(cap=backoff[1], base=backoff[0]), 0), **common
        )
        self._outbox: list[tuple[str, tuple[int | str, ...], asyncio.Future[str]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self.max_batch = max_batch
        self._wake_key = f"{key_prefix}:wake:{uuid.uuid4().hex}"
        self._wake_cursor = BEGINNING
        self._wake_pending = False
        self._watches: dict[str, _Watch] = {}
        self._requests: deque[tuple[Subscription, asyncio.Future[None] | None]] = deque()
        self._reader: asyncio.Task[None] | None = None
        self._available = True
        self._lost_in_xread = False
        self._closed = False
        self.stats = BrokerStats()

    # -- public API ---------------------------------------------------------------
    def stream_key(self, user: UserLike) -> str:
        """The exact Redis key of a user's stream (for operators and tests).

        Example:
            >>> import secrets, userscope as us
            >>> from userscope.events import RedisBroker
            >>> broker = RedisBroker("redis://127.0.0.1:6379/0", secret=secrets.token_hex(32))
            >>> broker.stream_key(us.UserExecutionContext(user_id="alice", thread_id="t"))
            'userscope:events:u:...'
        """
        return self._keys.stream_key(as_verified(user))

    async def publish(self, user: UserLike, event: Mapping[str, Any]) -> str:
        """Append ``event`` to the user's stream (one atomic script call).

        Args:
            user: the verified identity (a ``UserExecutionContext`` or ``VerifiedUser``).
            event: a JSON object; anything else raises :class:`EventPayloadError`.

        Returns:
            The Redis stream id of the new event.

        Raises:
            redis.exceptions.ConnectionError: Redis is unreachable; nothing was stored
                (or, rarely, it was stored but the reply was lost: ids make duplicates
                visible to clients).

        Example:
            The call is the same on every broker; it needs a reachable Redis, so the
            example that runs is :meth:`InMemoryBroker.publish`'s, and
            ``tests/events/test_events_redis.py`` runs it against a real Redis.
        """
        self._check_open()
        identity = as_verified(user)
        data = encode_event(event, self.max_event_bytes)
        key = self._keys.stream_key(identity)
        owner = self._keys.user_hash(identity)
        fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._outbox.append(
            (
                key,
                (
                    self.maxlen,
                    owner,
                    data,
                    max(1, int(self.idle_ttl * 1000)),
                    "=" if self.exact_trim else "~",
                ),
                fut,
            )
        )
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="userscope-redis-publish")
        event_id = await fut
        self.stats.published += 1
        return event_id

    async def _flush(self) -> None:
        """Send queued publishes, many per round trip (one pipeline in flight at a time).

        A lone publisher pays one round trip per event as before; concurrent publishers
        share round trips. Order is kept: a pipeline runs its commands in sequence.
        """
        while self._outbox:
            batch = self._outbox[: self.max_batch]
            del self._outbox[: self.max_batch]
            batch = [item for item in batch if not item[2].done()]  # drop cancelled ones
            if not batch:
                continue
            try:
                async with self._client.pipeline(transaction=False) as pipe:
                    for key, args, _ in batch:
                        pipe.eval(_PUBLISH_LUA, 1, key, *args)
                    results = await pipe.execute(raise_on_error=False)
            except Exception as exc:
                if _is_connection_error(exc):
                    self._available = False
                for _, _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            self._available = True
            for (_, _, fut), result in zip(batch, results, strict=True):
                if fut.done():
                    continue
                if isinstance(result, BaseException):
                    fut.set_exception(result)
                else:
                    fut.set_result(str(result))

    async def ping(self) -> bool:
        """Check that Redis answers (for readiness probes).

        Example:
            A readiness probe answers ``200`` when ``await broker.ping()`` returns
            ``True`` and ``503`` when it raises; it needs a reachable Redis, so no
            example runs here (``tests/events/test_events_redis.py`` pings a real one).
        """
        try:
            answered = bool(await self._client.ping())
        except Exception as exc:
            if _is_connection_error(exc):
                self._available = False
            raise
        self._available = answered
        return answered

    @property
    def available(self) -> bool:
        """``False`` while Redis is known to be unreachable; never waits.

        It turns ``False`` when the reader or a publish loses Redis and ``True`` again
        at the next command that succeeds. Use it to refuse work that needs events
        (``503``) instead of accepting it and failing later; ``await ping()`` asks
        Redis itself.

        Example:
            >>> import secrets
            >>> from userscope.events import RedisBroker
            >>> RedisBroker("redis://127.0.0.1:6379/0", secret=secrets.token_hex(32)).available
            True
        """
        return self._available

    async def aclose(self) -> None:
        """Stop the reader, end every subscription, close connections; idempotent.

        Example:
            >>> import asyncio, secrets
            >>> from userscope.events import RedisBroker
            >>> broker = RedisBroker("redis://127.0.0.1:6379/0", secret=secrets.token_hex(32))
            >>> asyncio.run(broker.aclose())  # at application shutdown
            >>> asyncio.run(broker.aclose())  # a second call does nothing
        """
        if self._closed:
            return
        self._closed = True
        if self._flusher is not None:  # publishes already accepted still go out
            with contextlib.suppress(Exception):
                await self._flusher
        if self._reader is not None:
            # an XREAD in flight only notices cancellation when it returns: wake it first
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await self._wake(force=True)
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            self._reader = None
        for watch in self._watches.values():
            for sub in list(watch.subs):
                sub._end()
        self._watches.clear()
        while self._requests:
            sub, fut = self._requests.popleft()
            sub._end()
            if fut is not None and not fut.done():
                fut.set_result(None)
        with contextlib.suppress(Exception):
            async with asyncio.timeout(1.0):
                await self._client.delete(self._wake_key)
        await self._reader_client.aclose()
        await self._client.aclose()

    # -- subscription backend -------------------------------------------------------
    async def _wake(self, *, force: bool = False) -> None:
        if self._wake_pending and not force:
            return  # a wake-up is on its way; the reader drains every queued request
        self._wake_pending = True
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.xadd(self._wake_key, {"w": "1"}, maxlen=1, approximate=False)
                pipe.pexpire(self._wake_key, _WAKE_TTL_MS)
                await pipe.execute()
        except asyncio.CancelledError:
            self._wake_pending = False  # not sent: let the next request try again
            raise
        except Exception:  # the reader is reconnecting; it handles requests once back
            self._wake_pending = False
            logger.debug("wake-up of the event reader failed", exc_info=True)

    def _ensure_reader(self) -> None:
        if self._reader is None or self._reader.done():
            self._reader = asyncio.create_task(self._read_loop(), name="userscope-redis-reader")

    async def _attach(self, sub: Subscription) -> None:
        self._check_open()
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._requests.append((sub, fut))
        self._ensure_reader()
        try:
            async with asyncio.timeout(self.attach_timeout):
                await self._wake()
                await fut
        except BaseException as exc:  # cancelled, failed or timed out: leave nothing behind
            fut.cancel()  # the reader skips (or undoes) a request whose future is done
            with contextlib.suppress(ValueError):
                self._requests.remove((sub, fut))
            self._detach(sub)
            if isinstance(exc, TimeoutError):
                raise BrokerUnavailableError(type(self).__name__, self.attach_timeout) from None
            raise

    def _detach(self, sub: Subscription) -> None:
        key = self._keys.stream_key(sub.identity)
        watch = self._watches.get(key)
        if watch is not None:
            watch.subs.discard(sub)
            if not watch.subs:
                del self._watches[key]

    async def _rewind(self, sub: Subscription) -> None:
        sub.resyncing = True  # drop live envelopes until the reader has caught it up
        self._requests.append((sub, None))
        self._ensure_reader()
        await self._wake()

    # -- the reader task --------------------------------------------------------------
    async def _last_id(self, key: str) -> str | None:
        entries = _entries(await self._reader_client.xrevrange(key, "+", "-", count=1))
        return entries[0][0] if entries else None

    async def _catch_up(self, sub: Subscription, key: str, start: str, end: str) -> None:
        """Push entries in (start, end] of ``key`` to ``sub`` (history replay)."""
        cursor = start
        while id_key(cursor) < id_key(end):
            page = _entries(
                await self._reader_client.xrange(key, f"({cursor}", end, count=self.read_count)
            )
            for event_id, fields in page:
                sub._push(_record(event_id, fields))
                cursor = event_id
            if len(page) < self.read_count:
                break

    async def _handle_request(self, sub: Subscription, fut: asyncio.Future[None] | None) -> None:
        key = self._keys.stream_key(sub.identity)
        if fut is None:  # rewind after the subscription overflowed
            sub.resyncing = False
            watch = self._watches.get(key)
            if watch is not None and sub in watch.subs:
                await self._catch_up(sub, key, sub.last_id, watch.cursor)
            return
        if sub.closed or fut.done():  # closed or cancelled before the reader got to it
            return
        last = await self._last_id(key)
        after = sub.requested_after
        if after is None:
            start = last or BEGINNING
            sub._set_position(start)
        elif after != BEGINNING and (last is None or id_key(last) < id_key(after)):
            sub._push(Lost())
            start = BEGINNING
        else:
            start = after
        watch = self._watches.get(key)  # looked up after the await: it may have gone
        if watch is not None and id_key(start) < id_key(watch.cursor):
            await self._catch_up(sub, key, start, watch.cursor)
            watch = self._watches.get(key)
        if sub.closed or fut.done():
            return
        if watch is None:
            watch = self._watches[key] = _Watch(cursor=start)
        watch.subs.add(sub)
        fut.set_result(None)

    async def _stream_was_lost(self, key: str, watch: _Watch) -> bool:
        """Whether the stream behind ``watch`` is gone (or replaced by a new one)."""
        last = await self._last_id(key)
        if last is None or id_key(last) < id_key(watch.cursor):
            return True
        if last == watch.cursor:
            return False
        # newer entries exist: the stream we were reading, or a new one written since
        # Redis came back empty? The old cursor entry is gone from a new stream, and the
        # new stream's first entry has no predecessor.
        if await self._reader_client.xrange(key, watch.cursor, watch.cursor, count=1):
            return False
        first = _entries(await self._reader_client.xrange(key, "-", "+", count=1))
        return bool(first) and first[0][1].get("p") == BEGINNING

    async def _resync(self) -> None:
        """After a reconnect: detect streams that Redis lost and tell their subscribers.

        A subscriber gets ``Gap(reason="missing")`` only if it may have missed events:
        when the reader had read everything the lost stream held (its last reply was
        not cut short by ``read_count``), Redis went away while the reader was blocked
        in ``XREAD`` (so every event stored before reached it) and the subscriber was
        not behind, the stream restarts for it without a gap.
        """
        import redis.exceptions as redis_errors

        self._wake_cursor = await self._last_id(self._wake_key) or BEGINNING
        for key, watch in list(self._watches.items()):
            if watch.cursor == BEGINNING:
                continue
            try:
                lost = await self._stream_was_lost(key, watch)
            except redis_errors.ResponseError as exc:  # this stream alone is refused
                for sub in list(watch.subs):
                    self._fail(sub, None, exc)
                self._watches.pop(key, None)
                continue
            if lost:
                # silent only if nothing can have been missed: the reader had read all of
                # the stream and was blocked in XREAD (not busy elsewhere) when Redis went
                silent = watch.drained and self._lost_in_xread
                logger.warning(
                    "stream history lost while reconnecting; %s",
                    "its subscribers had read all of it (no gap)" if silent else "reporting a gap",
                    extra=log_fields("events_stream_lost"),
                )
                for sub in watch.subs:
                    sub._push(Lost(silent=silent))
                watch.cursor = BEGINNING
                watch.drained = False

    def _fail(
        self, sub: Subscription, fut: asyncio.Future[None] | None, exc: BaseException
    ) -> None:
        """Fail one subscription alone (Redis refused something about its stream)."""
        error = SubscriptionFailedError(f"reading this user's stream failed: {exc}")
        self.stats.failed += 1
        logger.warning(
            "event subscription failed alone; the reader keeps serving the others: %s",
            exc,
            extra=log_fields(
                "events_subscription_failed",
                user_id=sub.identity.user_id,
                tenant_id=sub.identity.tenant_id,
            ),
        )
        self._detach(sub)
        if fut is not None and not fut.done():
            fut.set_exception(error)  # the attaching caller gets it from __aenter__
        else:
            sub._fail(error)  # an attached subscriber gets it from its next __anext__

    async def _isolate_refused_streams(self, cause: BaseException) -> None:
        """XREAD was refused: find the streams Redis refuses and fail only their watchers.

        Each watched stream is probed alone (non-blocking); a connection error propagates
        (the read loop reconnects). If no single stream is at fault the error is re-raised.
        """
        found = False
        for key, watch in list(self._watches.items()):
            try:
                await self._reader_client.xread({key: watch.cursor}, count=1)
            except Exception as exc:
                if _is_connection_error(exc):
                    raise
                found = True
                for sub in list(watch.subs):
                    self._fail(sub, None, exc)
                self._watches.pop(key, None)
        if not found:
            raise cause

    async def _read_once(self) -> None:
        import redis.exceptions as redis_errors

        self._wake_pending = False  # cleared before draining: later requests wake us again
        while self._requests:
            sub, fut = self._requests.popleft()
            try:
                await self._handle_request(sub, fut)
            except Exception as exc:
                if _is_connection_error(exc):
                    self._requests.appendleft((sub, fut))  # retried once Redis is back
                    raise
                # Redis refused something about this subscription alone (its stream key
                # holds another type, ...): fail it, keep serving everybody else
                self._fail(sub, fut, exc)
            except BaseException:
                self._requests.appendleft((sub, fut))
                raise
        streams: dict[Any, Any] = {self._wake_key: self._wake_cursor}
        for key, watch in self._watches.items():
            streams[key] = watch.cursor
        try:
            response = await self._reader_client.xread(
                streams, count=self.read_count, block=max(1, int(self.block_timeout * 1000))
            )
        except redis_errors.ResponseError as exc:
            await self._isolate_refused_streams(exc)
            return
        except BaseException:
            # if this was Redis going away, it went while we were blocked reading: every
            # event stored before that reached us (the read loop decides what it was)
            self._lost_in_xread = True
            raise
        raw: Any = response
        counts: dict[str, int] = {}
        for raw_key, raw_entries in raw or ():
            key = str(raw_key)
            entries = _entries(raw_entries)
            if key == self._wake_key:
                if entries:
                    self._wake_cursor = entries[-1][0]
                continue
            found = self._watches.get(key)
            if found is None:
                continue
            counts[key] = len(entries)
            for event_id, fields in entries:
                record = _record(event_id, fields)
                found.cursor = event_id
                for sub in list(found.subs):
                    sub._push(record)
        for key in streams:
            read = self._watches.get(key)
            if read is not None:  # a full page means Redis may hold more than we read
                read.drained = counts.get(key, 0) < self.read_count

    async def _read_loop(self) -> None:
        failures = 0
        need_resync = False
        while not self._closed:
            try:
                if need_resync:
                    await self._resync()
                    self._lost_in_xread = False
                    need_resync = False
                    failures = 0
                    self._available = True
                    logger.info(
                        "event reader reconnected to Redis",
                        extra=log_fields("events_reader_reconnected"),
                    )
                await self._read_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if _is_connection_error(exc):
                    self._available = False
                    if not need_resync:
                        self.stats.reconnects += 1
                        logger.warning(
                            "event reader lost Redis (%s); reconnecting",
                            exc,
                            extra=log_fields("events_reader_lost_redis"),
                        )
                elif failures == 0:  # one traceback per streak, not one per retry
                    logger.exception(
                        "event reader failed; retrying with backoff",
                        extra=log_fields("events_reader_failed"),
                    )
                need_resync = True
                failures += 1
                # redis-py's backoff policy: bounded by reconnect_backoff's cap, so the
                # reader is back within about that long after Redis is
                await asyncio.sleep(self._backoff.compute(failures))
