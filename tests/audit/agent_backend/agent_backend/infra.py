"""Infrastructure shared by design: reported as notes, never as errors."""

from sqlalchemy import create_engine

DATABASE_URL = "sqlite://"
_engine = None


def get_engine():
    global _engine
    if _engine is None:
        _engine = create_engine(DATABASE_URL)
    return _engine


class CircuitBreaker:
    def __init__(self):
        self._failures = 0

    def record_failure(self):
        self._failures += 1


class MetricsCollector:
    def __init__(self):
        self._counts = {}

    def incr(self, name):
        self._counts[name] = self._counts.get(name, 0) + 1


breaker = CircuitBreaker()
metrics = MetricsCollector()
