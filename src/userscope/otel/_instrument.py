"""The OpenTelemetry :class:`~userscope.ScopeObserver`: metrics always, traces when asked."""

from __future__ import annotations

import random
import threading
import time
import weakref
from collections.abc import Callable, Collection, Iterable
from typing import TYPE_CHECKING

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.trace import Status, StatusCode

import userscope
from userscope.container._observe import ScopeObserver, UserKey
from userscope.container._scope import Scope
from userscope.otel._errors import AlreadyInstrumentedError

if TYPE_CHECKING:
    from userscope.container._sessions import SessionStats, UserSessions
    from userscope.context import UserExecutionContext

__all__ = ["METER_NAME", "Instrumentation", "instrument", "uninstrument"]

METER_NAME = "userscope"
"""Name of the meter and the tracer (instrumentation scope) userscope reports under."""

# Attribute keys: low cardinality only (never a user id on a metric).
PROVIDER = "userscope.provider"
SCOPE = "userscope.scope"
LIMIT = "userscope.limit"
REASON = "userscope.reason"
ERROR_TYPE = "error.type"
TENANT = "userscope.tenant_id"
REQUEST_ID = "userscope.request_id"
USER_ID = "enduser.id"

_SECONDS = (0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0)
_LEVELS = (Scope.USER, Scope.CONNECTION, Scope.REQUEST)
_SNAPSHOT_TTL = 1.0  # seconds one stats() snapshot serves the three gauges

_Key = tuple[tuple[str, str], ...]  # a metric point's attributes, hashable
_COUNTERS = (
    ("userscope.instances.created", "{instance}", "Scoped instances created"),
    ("userscope.cleanups.run", "{cleanup}", "Finalizers run at scope exit"),
    ("userscope.cleanups.failed", "{cleanup}", "Finalizers that raised or timed out"),
    ("userscope.limit.refusals", "{refusal}", "Scopes or instances refused by a limit"),
    (
        "userscope.users.ended",
        "{user}",
        "USER scopes ended, by reason: evicted, expired, closed, shutdown",
    ),
    ("userscope.sweeps", "{sweep}", "Expiry sweeps run"),
    ("userscope.leaks", "{instance}", "Scoped instances found alive after their scope"),
)


class _Traced:
    """The token of a traced scope: its span."""

    __slots__ = ("failed", "span")

    def __init__(self, span: trace.Span) -> None:
        self.span = span
        self.failed = False


class _Meters:
    """The instruments of one meter provider, shared by every runtime instrumented on it.

    OpenTelemetry keeps one instrument per name and meter, so two runtimes reporting to
    the same provider share these: counters add up, gauges sum the live runtimes.
    Counters are tallied here (a dict increment under a lock) and handed to OpenTelemetry
    as observable counters at collection: an SDK ``Counter.add`` costs 10-20 us.
    Tallies outlive an ``uninstrument()``: a cumulative counter never goes back.
    """

    def __init__(self, meter: metrics.Meter) -> None:
        self.lock = threading.Lock()
        self.tallies: dict[str, dict[_Key, int]] = {}
        self.members: weakref.WeakSet[Instrumentation] = weakref.WeakSet()
        for name, unit, description in _COUNTERS:
            tally: dict[_Key, int] = {}
            self.tallies[name] = tally
            meter.create_observable_counter(name, [self._reporter(tally)], unit, description)
        self.cleanup_duration = meter.create_histogram(
            "userscope.cleanup.duration",
            "s",
            "Duration of one finalizer",
            explicit_bucket_boundaries_advisory=_SECONDS,
        )
        self.sweep_duration = meter.create_histogram(
            "userscope.sweep.duration",
            "s",
            "Duration of one expiry sweep",
            explicit_bucket_boundaries_advisory=_SECONDS,
        )
        meter.create_observable_gauge(
            "userscope.users.live", [self._observe_users], "{user}", "User sessions kept"
        )
        meter.create_observable_gauge(
            "userscope.scopes.open", [self._observe_scopes], "{scope}", "Open scopes by level"
        )
        meter.create_observable_gauge(
            "userscope.instances.live",
            [self._observe_instances],
            "{instance}",
            "Live scoped instances by provider",
        )

    def add(self, name: str, key: _Key) -> None:
        tally = self.tallies[name]
        with self.lock:
            tally[key] = tally.get(key, 0) + 1

    def _reporter(
        self, tally: dict[_Key, int]
    ) -> Callable[[metrics.CallbackOptions], Iterable[metrics.Observation]]:
        def report(options: metrics.CallbackOptions) -> Iterable[metrics.Observation]:
            with self.lock:
                items = sorted(tally.items())
            return [metrics.Observation(count, dict(key)) for key, count in items]

        return report

    def _snapshots(self) -> list[SessionStats]:
        with self.lock:
            members = list(self.members)
        found = [member.stats() for member in members]
        return [stats for stats in found if stats is not None]

    def _observe_users(self, options: metrics.CallbackOptions) -> Iterable[metrics.Observation]:
        snapshots = self._snapshots()
        return [metrics.Observation(sum(s.users for s in snapshots))] if snapshots else []

    def _observe_scopes(self, options: metrics.CallbackOptions) -> Iterable[metrics.Observation]:
        snapshots = self._snapshots()
        if not snapshots:
            return []
        return [
            metrics.Observation(sum(s.users for s in snapshots), {SCOPE: "USER"}),
            metrics.Observation(sum(s.connections for s in snapshots), {SCOPE: "CONNECTION"}),
            metrics.Observation(sum(s.requests for s in snapshots), {SCOPE: "REQUEST"}),
        ]

    def _observe_instances(self, options: metrics.CallbackOptions) -> Iterable[metrics.Observation]:
        live: dict[str, int] = {}
        for stats in self._snapshots():
            for provider, count in stats.instances_by_provider.items():
                live[provider] = live.get(provider, 0) + count
        return [metrics.Observation(count, {PROVIDER: p}) for p, count in sorted(live.items())]


_meters: weakref.WeakKeyDictionary[object, _Meters] = weakref.WeakKeyDictionary()
_meters_lock = threading.Lock()


def _meters_of(provider: metrics.MeterProvider) -> _Meters:
    with _meters_lock:
        found = _meters.get(provider)
        if found is None:
            meter = provider.get_meter(METER_NAME, userscope.__version__)
            found = _meters[provider] = _Meters(meter)
        return found


class Instrumentation(ScopeObserver):
    """The OpenTelemetry observer :func:`instrument` sets on a runtime; also its handle.

    Counters are tallied in memory as the runtime reports events and handed to
    OpenTelemetry as observable counters when the metric reader collects (an SDK
    ``Counter.add`` costs 10-20 us; a tally, well under one); the two duration histograms
    are recorded directly. The three gauges (live users, open scopes by level, live
    instances by provider) read ``sessions.stats()`` at collection, at most once a second.
    Runtimes instrumented on the same meter provider share its instruments: counters
    and gauges add up across them.

    Example:
        >>> import userscope as us
        >>> from userscope import otel
        >>> sessions = us.UserSessions()
        >>> handle = otel.instrument(sessions, traces=True, sample_ratio=0.5)
        >>> handle.traces, handle.sample_ratio
        (True, 0.5)
        >>> handle.uninstrument()
    """

    def __init__(
        self,
        sessions: UserSessions,
        *,
        meter_provider: metrics.MeterProvider | None = None,
        tracer_provider: trace.TracerProvider | None = None,
        traces: bool = False,
        sample_ratio: float = 0.1,
        span_levels: Collection[Scope] = _LEVELS,
        span_user_id: bool = False,
    ) -> None:
        if not 0.0 <= sample_ratio <= 1.0:
            raise ValueError(f"sample_ratio must be between 0 and 1, got {sample_ratio!r}")
        unknown = [level for level in span_levels if not isinstance(level, Scope)]
        if unknown:
            raise TypeError(f"span_levels takes userscope.Scope members, got {unknown!r}")
        self._sessions = weakref.ref(sessions)
        self.traces = traces
        self.sample_ratio = sample_ratio
        self.span_levels = frozenset(span_levels)
        self.span_user_id = span_user_id
        self.active = True
        self._attrs: dict[tuple[str, Scope], tuple[_Key, dict[str, str]]] = {}
        self._snapshot: tuple[float, SessionStats] | None = None
        self._snapshot_lock = threading.Lock()
        self._random = random.Random()
        self._tracer = (tracer_provider or trace.get_tracer_provider()).get_tracer(
            METER_NAME, userscope.__version__
        )
        self._meters = _meters_of(meter_provider or metrics.get_meter_provider())
        self._add = self._meters.add
        with self._meters.lock:
            self._meters.members.add(self)

    # -- handle -------------------------------------------------------------------
    def uninstrument(self) -> None:
        """Stop reporting: unset the observer and empty the gauges. Idempotent.

        Example:
            >>> import userscope as us
            >>> from userscope import otel
            >>> sessions = us.UserSessions()
            >>> handle = otel.instrument(sessions)
            >>> handle.uninstrument(); handle.uninstrument(); handle.active
            False
        """
        self.active = False
        with self._meters.lock:
            self._meters.members.discard(self)
        sessions = self._sessions()
        if sessions is not None and sessions.observer is self:
            sessions.observer = None

    def _attributes(self, provider: str, level: Scope) -> tuple[_Key, dict[str, str]]:
        """The attributes of a (provider, level) point: as a tally key and as a dict."""
        found = self._attrs.get((provider, level))
        if found is None:
            key: _Key = ((PROVIDER, provider), (SCOPE, level.name))
            found = self._attrs[(provider, level)] = (key, dict(key))
        return found

    # -- gauges (read stats() at collection) -------------------------------------------
    def stats(self) -> SessionStats | None:
        """The runtime's ``stats()``, cached for a second (``None`` once it is gone or
        uninstrumented): what the gauges report.

        Example:
            >>> import userscope as us
            >>> from userscope import otel
            >>> sessions = us.UserSessions()
            >>> otel.instrument(sessions).stats().users
            0
            >>> otel.uninstrument(sessions)
        """
        sessions = self._sessions()
        if sessions is None or not self.active:
            return None
        now = time.monotonic()
        with self._snapshot_lock:
            if self._snapshot is not None and now - self._snapshot[0] < _SNAPSHOT_TTL:
                return self._snapshot[1]
            stats = sessions.stats()
            self._snapshot = (now, stats)
            return stats

    # -- ScopeObserver ----------------------------------------------------------------
    def scope_opened(self, level: Scope, ctx: UserExecutionContext) -> object:
        """Start a span for the scope when traces are on and it is sampled."""
        if not self.traces or level not in self.span_levels:
            return None
        if level is Scope.USER:  # lives for hours: its own trace, not a child of a request
            parent: otel_context.Context | None = otel_context.Context()
            sampled = self._random.random() < self.sample_ratio
        else:
            parent = None  # the current span (e.g. the server span of the HTTP request)
            current = trace.get_current_span().get_span_context()
            if current.is_valid:
                sampled = current.trace_flags.sampled
            else:
                sampled = self._random.random() < self.sample_ratio
        if not sampled:
            return None
        attributes: dict[str, str] = {SCOPE: level.name}
        if ctx.tenant_id is not None:
            attributes[TENANT] = ctx.tenant_id
        if ctx.request_id is not None and level is not Scope.USER:
            attributes[REQUEST_ID] = ctx.request_id
        if self.span_user_id:
            attributes[USER_ID] = ctx.user_id
        span = self._tracer.start_span(
            f"userscope.{level.name.lower()}", context=parent, attributes=attributes
        )
        return _Traced(span)

    def scope_closed(self, token: object, level: Scope, error: BaseException | None) -> None:
        """End the scope's span, marked as an error when a cleanup failed."""
        if type(token) is not _Traced:
            return
        span = token.span
        if error is not None and not token.failed:
            span.set_status(Status(StatusCode.ERROR, f"cleanup failed: {type(error).__name__}"))
        span.end()

    def instance_created(self, token: object, provider: str, level: Scope) -> None:
        """Count the creation; add a span event when the scope is traced."""
        key, attributes = self._attributes(provider, level)
        self._add("userscope.instances.created", key)
        if type(token) is _Traced:
            token.span.add_event("userscope.instance_created", attributes)

    def cleanup_finished(
        self,
        token: object,
        provider: str,
        level: Scope,
        seconds: float,
        error: BaseException | None,
    ) -> None:
        """Count the finalizer and its duration; record a failure on the span."""
        key, attributes = self._attributes(provider, level)
        self._add("userscope.cleanups.run", key)
        self._meters.cleanup_duration.record(seconds, attributes)
        if error is None:
            return
        failed = (*key, (ERROR_TYPE, type(error).__qualname__))
        self._add("userscope.cleanups.failed", tuple(sorted(failed)))
        if type(token) is _Traced:
            token.failed = True
            token.span.record_exception(error, {PROVIDER: provider})
            token.span.set_status(Status(StatusCode.ERROR, f"cleanup of {provider} failed"))

    def limit_refused(self, limit: str, user: UserKey | None) -> None:
        """Count the refusal by limit name (the user is not a metric attribute)."""
        self._add("userscope.limit.refusals", ((LIMIT, limit),))
        if self.traces:
            span = trace.get_current_span()
            if span.is_recording():
                span.add_event("userscope.limit_refused", {LIMIT: limit})

    def user_ended(self, user: UserKey, reason: str) -> None:
        """Count the ended user by reason (``evicted``, ``expired``, ``closed``, ``shutdown``)."""
        self._add("userscope.users.ended", ((REASON, reason),))

    def swept(self, closed: int, seconds: float) -> None:
        """Count the sweep and record its duration."""
        self._add("userscope.sweeps", ())
        self._meters.sweep_duration.record(seconds)

    def leak_detected(self, provider: str, level: Scope, type_name: str) -> None:
        """Count the leaked instance by provider and level."""
        self._add("userscope.leaks", self._attributes(provider, level)[0])


def instrument(
    sessions: UserSessions,
    *,
    meter_provider: metrics.MeterProvider | None = None,
    tracer_provider: trace.TracerProvider | None = None,
    traces: bool = False,
    sample_ratio: float = 0.1,
    span_levels: Collection[Scope] = _LEVELS,
    span_user_id: bool = False,
) -> Instrumentation:
    """Report a runtime's metrics (and, if asked, traces) through OpenTelemetry.

    Args:
        sessions: the runtime to observe; it must have no observer yet.
        meter_provider: where metrics go (default: the global meter provider).
        tracer_provider: where spans go (default: the global tracer provider).
        traces: also start a span per scope (off by default).
        sample_ratio: share of scopes without a sampled parent span that get one
            (a scope inside a sampled span, e.g. the HTTP server span, follows its
            parent's decision). The tracer provider's own sampler applies after.
        span_levels: the levels that get spans (default all three).
        span_user_id: put the user id on spans as ``enduser.id`` (off by default;
            never on metrics).

    Returns:
        The observer, set as ``sessions.observer``; call ``.uninstrument()`` to stop.

    Raises:
        AlreadyInstrumentedError: the runtime already has an observer.

    Example:
        >>> import userscope as us
        >>> from userscope import otel
        >>> sessions = us.UserSessions()
        >>> handle = otel.instrument(sessions)
        >>> otel.instrument(sessions)
        Traceback (most recent call last):
        ...
        userscope.otel._errors.AlreadyInstrumentedError: this UserSessions already has ...
        >>> otel.uninstrument(sessions)
    """
    current = sessions.observer
    if current is not None:
        raise AlreadyInstrumentedError(current)
    observer = Instrumentation(
        sessions,
        meter_provider=meter_provider,
        tracer_provider=tracer_provider,
        traces=traces,
        sample_ratio=sample_ratio,
        span_levels=span_levels,
        span_user_id=span_user_id,
    )
    sessions.observer = observer
    return observer


def uninstrument(sessions: UserSessions) -> None:
    """Stop the OpenTelemetry observer of ``sessions``, if it has one.

    Example:
        >>> import userscope as us
        >>> from userscope import otel
        >>> sessions = us.UserSessions()
        >>> _ = otel.instrument(sessions)
        >>> otel.uninstrument(sessions); sessions.observer is None
        True
    """
    observer = sessions.observer
    if isinstance(observer, Instrumentation):
        observer.uninstrument()
