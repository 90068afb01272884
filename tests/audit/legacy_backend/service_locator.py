"""Service locator with a singleton metaclass."""

from __future__ import annotations

from typing import Any


class SingletonMeta(type):
    _instances: dict[type, Any] = {}  # noqa: RUF012 - the singleton cache under audit

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        if cls not in cls._instances:
            cls._instances[cls] = super().__call__(*args, **kwargs)
        return cls._instances[cls]


class ServiceLocator(metaclass=SingletonMeta):
    def __init__(self) -> None:
        self._services: dict[str, Any] = {}

    def register(self, name: str, service: Any) -> None:
        self._services[name] = service

    def resolve(self, name: str) -> Any:
        return self._services[name]


locator = ServiceLocator()
