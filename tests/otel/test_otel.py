"""`userscope.otel`: metrics and spans after real scopes, failures, refusals and evictions,
read back with the SDK's in-memory metric reader and span exporter."""

from __future__ import annotations

import contextvars
import gc
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from dependency_injector import containers
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import userscope as us
from userscope import otel

SECRET_USER = "user-7f3a9c"  # must never show up as a metric attribute
TENANT = "acme"


def ctx(user: str = SECRET_USER, tenant: str | None = TENANT) -> us.UserExecutionContext:
    return us.UserExecutionContext(user_id=user, thread_id="t", tenant_id=tenant, request_id="r-1")


def _broken_cleanup() -> Iterator[str]:
    yield "socket"
    raise ConnectionError("peer gone")


class Box:
    pass


class C(containers.DeclarativeContainer):
    context = us.CurrentContext()
    registry = us.UserScoped(dict)
    bridge = us.ConnectionScoped(_broken_cleanup)
    agent = us.RequestScoped(dict, registry=registry)
    box = us.RequestScoped(Box)


class Telemetry:
    """An SDK meter provider and tracer provider writing to memory."""

    def __init__(self) -> None:
        self.reader = InMemoryMetricReader()
        self.meters = MeterProvider(metric_readers=[self.reader])
        self.exporter = InMemorySpanExporter()
        self.tracers = TracerProvider()
        self.tracers.add_span_processor(SimpleSpanProcessor(self.exporter))

    def instrument(self, sessions: us.UserSessions, **kwargs: Any) -> otel.Instrumentation:
        return otel.instrument(
            sessions, meter_provider=self.meters, tracer_provider=self.tracers, **kwargs
        )

    def metrics(self) -> dict[str, Any]:
        """name -> metric (the SDK's data model), for the last collection."""
        data = self.reader.get_metrics_data()
        found: dict[str, Any] = {}
        if data is None:
            return found
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                assert scope.scope.name == "userscope"
                for metric in scope.metrics:
                    found[metric.name] = metric
        return found

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def shutdown(self) -> None:
        self.meters.shutdown()
        self.tracers.shutdown()


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    found = Telemetry()
    yield found
    found.shutdown()


def points(metric: Any) -> dict[tuple[tuple[str, Any], ...], Any]:
    """attributes (sorted items) -> value (sums, gauges) or (count, sum) (histograms)."""
    out: dict[tuple[tuple[str, Any], ...], Any] = {}
    for point in metric.data.data_points:
        key = tuple(sorted((point.attributes or {}).items()))
        out[key] = (point.count, point.sum) if hasattr(point, "bucket_counts") else point.value
    return out


def attribute_values(metrics: dict[str, Any]) -> set[Any]:
    return {
        value
        for metric in metrics.values()
        for point in metric.data.data_points
        for value in (point.attributes or {}).values()
    }


P = "userscope.provider"
S = "userscope.scope"


def test_metrics_after_real_scopes_and_a_failed_cleanup(telemetry: Telemetry) -> None:
    sessions = us.UserSessions()
    telemetry.instrument(sessions)
    with pytest.raises(us.CleanupError):
        with sessions.connection(ctx()):
            with sessions.request(ctx()):
                C.agent()
                C.bridge()
                C.box()
                live = telemetry.metrics()  # collected while the scopes are open
    assert live["userscope.users.live"].unit == "{user}"
    assert points(live["userscope.users.live"]) == {(): 1}
    assert points(live["userscope.scopes.open"]) == {
        ((S, "USER"),): 1,
        ((S, "CONNECTION"),): 1,
        ((S, "REQUEST"),): 1,
    }
    assert points(live["userscope.instances.live"]) == {
        ((P, "C.agent"),): 1,
        ((P, "C.box"),): 1,
        ((P, "C.bridge"),): 1,
        ((P, "C.registry"),): 1,
    }
    metrics = telemetry.metrics()
    assert points(metrics["userscope.instances.created"]) == {
        ((P, "C.agent"), (S, "REQUEST")): 1,
        ((P, "C.box"), (S, "REQUEST")): 1,
        ((P, "C.bridge"), (S, "CONNECTION")): 1,
        ((P, "C.registry"), (S, "USER")): 1,
    }
    assert points(metrics["userscope.cleanups.run"]) == {((P, "C.bridge"), (S, "CONNECTION")): 1}
    assert points(metrics["userscope.cleanups.failed"]) == {
        (("error.type", "ConnectionError"), (P, "C.bridge"), (S, "CONNECTION")): 1
    }
    duration = metrics["userscope.cleanup.duration"]
    assert duration.unit == "s"
    ((key, (count, total)),) = points(duration).items()
    assert key == ((P, "C.bridge"), (S, "CONNECTION"))
    assert count == 1
    assert total >= 0
    assert SECRET_USER not in attribute_values(metrics) | attribute_values(live)
    assert TENANT not in attribute_values(metrics) | attribute_values(live)
    sessions.close()


def test_refusals_by_limit(telemetry: Telemetry) -> None:
    sessions = us.UserSessions(max_connections_per_user=1, max_instances_per_user=1)
    telemetry.instrument(sessions)
    with sessions.connection(ctx()):
        with pytest.raises(us.ScopeLimitError), sessions.connection(ctx()):
            pass
        with sessions.request(ctx()):
            C.box()
            with pytest.raises(us.ScopeLimitError):
                C.agent()
            with pytest.raises(us.ScopeLimitError):
                C.registry()
    crowded = us.UserSessions(max_users=1)
    telemetry.instrument(crowded)

    def other_user_arrives() -> None:
        with pytest.raises(us.ScopeLimitError), crowded.request(ctx("someone-else")):
            pass

    with crowded.request(ctx()):
        contextvars.Context().run(other_user_arrives)
    metrics = telemetry.metrics()
    assert points(metrics["userscope.limit.refusals"]) == {
        (("userscope.limit", "max_connections_per_user"),): 1,
        (("userscope.limit", "max_instances_per_user"),): 2,
        (("userscope.limit", "max_users"),): 1,
    }
    assert not {SECRET_USER, "someone-else"} & attribute_values(metrics)
    sessions.close()
    crowded.close()


def test_evictions_expiry_sweeps_and_shutdown(telemetry: Telemetry) -> None:
    now = [0.0]
    sessions = us.UserSessions(max_users=2, idle_timeout=10, clock=lambda: now[0])
    telemetry.instrument(sessions)
    for user in ("u1", "u2", "u3"):  # u3 evicts u1, the least recently used
        with sessions.request(ctx(user)):
            C.registry()
    sessions.close_user("u2", tenant_id=TENANT)
    now[0] = 100.0
    assert sessions.sweep() == 1  # u3 expired
    with sessions.request(ctx("u4")):
        pass
    sessions.close()  # u4 at shutdown
    metrics = telemetry.metrics()
    assert points(metrics["userscope.users.ended"]) == {
        (("userscope.reason", "evicted"),): 1,
        (("userscope.reason", "closed"),): 1,
        (("userscope.reason", "expired"),): 1,
        (("userscope.reason", "shutdown"),): 1,
    }
    assert points(metrics["userscope.sweeps"]) == {(): 1}
    ((_, (count, _)),) = points(metrics["userscope.sweep.duration"]).items()
    assert count == 1
    assert points(metrics["userscope.users.live"]) == {(): 0}
    assert not {"u1", "u2", "u3", "u4"} & attribute_values(metrics)


def test_leak_reports(telemetry: Telemetry) -> None:
    sessions = us.UserSessions(leak_check=True)
    telemetry.instrument(sessions)
    kept = []
    with sessions.request(ctx()):
        kept.append(C.box())
    assert len(sessions.check_leaks()) == 1
    assert points(telemetry.metrics()["userscope.leaks"]) == {((P, "C.box"), (S, "REQUEST")): 1}
    kept.clear()
    gc.collect()


def test_traces_are_off_by_default(telemetry: Telemetry) -> None:
    sessions = us.UserSessions()
    handle = telemetry.instrument(sessions)
    assert handle.traces is False
    with sessions.request(ctx()):
        C.agent()
    assert telemetry.spans() == []
    assert "userscope.instances.created" in telemetry.metrics()


def test_a_span_per_scope_with_events_and_recorded_cleanup_failures(
    telemetry: Telemetry,
) -> None:
    sessions = us.UserSessions()
    telemetry.instrument(sessions, traces=True, sample_ratio=1.0)
    with pytest.raises(us.CleanupError):
        with sessions.connection(ctx()):
            with sessions.request(ctx()):
                C.agent()
            C.bridge()
    sessions.close()
    spans = {span.name: span for span in telemetry.spans()}
    assert set(spans) == {"userscope.user", "userscope.connection", "userscope.request"}
    request, connection, user = (
        spans["userscope.request"],
        spans["userscope.connection"],
        spans["userscope.user"],
    )
    assert request.attributes == {S: "REQUEST", "userscope.tenant_id": TENANT,
                                  "userscope.request_id": "r-1"}  # fmt: skip
    assert user.attributes == {S: "USER", "userscope.tenant_id": TENANT}
    assert [(e.name, dict(e.attributes or {})) for e in request.events] == [
        ("userscope.instance_created", {P: "C.agent", S: "REQUEST"})
    ]
    assert [(e.name, dict(e.attributes or {})) for e in user.events] == [
        ("userscope.instance_created", {P: "C.registry", S: "USER"})
    ]
    assert request.status.status_code is StatusCode.UNSET
    assert connection.status.status_code is StatusCode.ERROR
    assert connection.status.description == "cleanup of C.bridge failed"
    (exception,) = [e for e in connection.events if e.name == "exception"]
    assert exception.attributes is not None
    assert exception.attributes["exception.type"] == "ConnectionError"
    assert exception.attributes[P] == "C.bridge"
    # the user's span is a trace of its own; the request span is not a child of it
    assert user.parent is None
    for span in telemetry.spans():
        assert SECRET_USER not in (span.attributes or {}).values()


def test_span_user_id_is_opt_in(telemetry: Telemetry) -> None:
    sessions = us.UserSessions()
    telemetry.instrument(
        sessions, traces=True, sample_ratio=1.0, span_user_id=True, span_levels=[us.Scope.REQUEST]
    )
    with sessions.request(ctx()):
        pass
    (span,) = telemetry.spans()
    assert span.attributes is not None
    assert span.attributes["enduser.id"] == SECRET_USER


def test_sampling_follows_the_parent_span_and_the_ratio(telemetry: Telemetry) -> None:
    sessions = us.UserSessions()
    telemetry.instrument(sessions, traces=True, sample_ratio=0.0)
    with sessions.request(ctx()):  # no parent, ratio 0: no span
        C.agent()
    assert telemetry.spans() == []
    tracer = telemetry.tracers.get_tracer("app")
    with tracer.start_as_current_span("GET /chat") as server, sessions.request(ctx()):
        C.agent()
    names = [span.name for span in telemetry.spans()]
    assert names == ["userscope.request", "GET /chat"]
    request = telemetry.spans()[0]
    assert request.parent is not None
    assert request.parent.span_id == server.get_span_context().span_id
    sessions.close()


def test_refusal_is_an_event_on_the_current_span(telemetry: Telemetry) -> None:
    sessions = us.UserSessions(max_instances_per_user=1)
    telemetry.instrument(sessions, traces=True, sample_ratio=1.0, span_levels=())
    tracer = telemetry.tracers.get_tracer("app")
    with tracer.start_as_current_span("work"), sessions.request(ctx()):
        C.box()
        with pytest.raises(us.ScopeLimitError):
            C.agent()
    (work,) = telemetry.spans()
    assert [(e.name, dict(e.attributes or {})) for e in work.events] == [
        ("userscope.limit_refused", {"userscope.limit": "max_instances_per_user"})
    ]
    sessions.close()


def test_uninstrument_stops_reporting(telemetry: Telemetry) -> None:
    sessions = us.UserSessions()
    handle = telemetry.instrument(sessions)
    with sessions.request(ctx()):
        C.agent()
    otel.uninstrument(sessions)
    assert sessions.observer is None
    assert handle.active is False
    with sessions.request(ctx("later")):
        C.agent()
    metrics = telemetry.metrics()
    assert points(metrics["userscope.instances.created"]) == {
        ((P, "C.agent"), (S, "REQUEST")): 1,
        ((P, "C.registry"), (S, "USER")): 1,
    }
    assert "userscope.users.live" not in metrics or points(metrics["userscope.users.live"]) == {}
    # instrumenting again works after uninstrument
    again = telemetry.instrument(sessions)
    assert sessions.observer is again
    sessions.close()


def test_instrumenting_twice_is_refused_with_the_observer(telemetry: Telemetry) -> None:
    sessions = us.UserSessions()
    first = telemetry.instrument(sessions)
    with pytest.raises(otel.AlreadyInstrumentedError) as caught:
        telemetry.instrument(sessions)
    assert caught.value.observer is first
    assert isinstance(caught.value, us.UserscopeError)
    assert isinstance(caught.value, RuntimeError)
    assert sessions.observer is first


def test_bad_arguments_are_refused_and_leave_no_observer() -> None:
    sessions = us.UserSessions()
    with pytest.raises(ValueError, match="sample_ratio"):
        otel.instrument(sessions, sample_ratio=1.5)
    with pytest.raises(TypeError, match="span_levels"):
        otel.instrument(sessions, span_levels=["REQUEST"])  # type: ignore[list-item]
    assert sessions.observer is None


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )


def test_import_userscope_loads_nothing_of_opentelemetry() -> None:
    result = _run(
        "import sys, userscope as us\n"
        "s = us.UserSessions()\n"
        "with s.request(us.UserExecutionContext(user_id='a', thread_id='t')): pass\n"
        "s.close()\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_without_the_extra_the_import_says_what_to_install() -> None:
    result = _run(
        "import sys\n"
        "sys.modules['opentelemetry'] = None  # as if the extra were not installed\n"
        "try:\n"
        "    import userscope.otel\n"
        "except ImportError as err:\n"
        "    print(type(err).__name__, err.missing)\n"
        "    print(err)\n"
    )
    assert result.returncode == 0, result.stderr
    first, message = result.stdout.strip().splitlines()
    assert first == "OtelNotInstalledError opentelemetry.metrics"
    assert 'pip install "userscope[otel]"' in message
