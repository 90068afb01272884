"""Seeing a userscope runtime run: OpenTelemetry metrics and spans, JSON logs, and a
picture of the container.

Run it with ``python -m examples.observability.monitored_chat`` (needs
``pip install "userscope[otel]"`` and, for the in-memory reader, ``opentelemetry-sdk``).
It serves a few users, one of whose cleanups fails and one of whom is refused by a
limit, then prints what a dashboard would show.
"""

from __future__ import annotations

import json
import logging
import logging.config
from collections.abc import Iterator
from typing import Any

from dependency_injector import containers, providers
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import userscope as us
from userscope import otel


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with every ``userscope_*`` field the record carries."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(
            (key, value) for key, value in vars(record).items() if key.startswith("userscope_")
        )
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": JsonFormatter}},
    "handlers": {
        "stdout": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "stream": "ext://sys.stdout",
        }
    },
    "loggers": {"userscope": {"handlers": ["stdout"], "level": "INFO", "propagate": False}},
}


class AgentRegistry:
    def __init__(self, ctx: us.UserExecutionContext) -> None:
        self.user_id = ctx.user_id


def open_bridge(ctx: us.UserExecutionContext) -> Iterator[list[str]]:
    events: list[str] = []
    yield events
    if ctx.user_id == "mallory":  # one user's socket breaks on close
        raise ConnectionResetError("socket already gone")


class Container(containers.DeclarativeContainer):
    llm = providers.Singleton(dict, model="small")
    context = us.CurrentContext()
    registry = us.UserScoped(AgentRegistry, context)
    bridge = us.ConnectionScoped(open_bridge, context)
    agent = us.RequestScoped(dict, registry=registry, bridge=bridge, llm=llm)


def serve(sessions: us.UserSessions) -> None:
    """A few users' requests: plain ones, a failing cleanup, a refused connection."""
    for user in ("alice", "bob", "alice"):
        ctx = us.UserExecutionContext(user_id=user, thread_id="t", tenant_id="acme")
        with sessions.request(ctx):
            Container.agent()
    mallory = us.UserExecutionContext(user_id="mallory", thread_id="t", tenant_id="acme")
    try:
        with sessions.request(mallory):
            Container.agent()
    except us.CleanupError:
        pass  # counted in userscope.cleanups.failed, recorded on the span
    with sessions.connection(mallory):
        try:
            with sessions.connection(mallory):  # a second socket: over the limit
                pass
        except us.ScopeLimitError:
            pass  # counted in userscope.limit.refusals{userscope.limit=max_connections_per_user}


def summary(reader: InMemoryMetricReader) -> dict[str, dict[str, float]]:
    """metric name -> {attributes as text: value (or count, for histograms)}."""
    data = reader.get_metrics_data()
    out: dict[str, dict[str, float]] = {}
    for resource in data.resource_metrics if data else []:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                points: dict[str, float] = {}
                for point in metric.data.data_points:
                    key = ",".join(f"{k}={v}" for k, v in sorted((point.attributes or {}).items()))
                    value: Any = getattr(point, "value", None)
                    points[key] = point.count if value is None else value  # type: ignore[attr-defined]
                out[metric.name] = points
    return out


def main() -> dict[str, Any]:
    logging.config.dictConfig(LOGGING)
    reader = InMemoryMetricReader()
    meters = MeterProvider(metric_readers=[reader])
    spans = InMemorySpanExporter()
    tracers = TracerProvider()
    tracers.add_span_processor(SimpleSpanProcessor(spans))
    sessions = us.UserSessions(max_connections_per_user=1)
    otel.instrument(
        sessions, meter_provider=meters, tracer_provider=tracers, traces=True, sample_ratio=1.0
    )
    serve(sessions)
    metrics = summary(reader)
    sessions.close()
    for name in sorted(metrics):
        print(f"{name}: {metrics[name]}")
    finished = spans.get_finished_spans()
    print(f"spans: {sorted({span.name for span in finished})}")
    print(us.graph(Container))
    meters.shutdown()
    tracers.shutdown()
    logging.getLogger("userscope").handlers.clear()  # leave logging as we found it
    logging.getLogger("userscope").propagate = True
    return {"metrics": metrics, "spans": finished}


if __name__ == "__main__":
    main()
