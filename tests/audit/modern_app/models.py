"""Request/response models and value types."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Generic, NamedTuple, Protocol, TypeVar

from pydantic import BaseModel, Field

T = TypeVar("T")
UserId = str


class Role(enum.Enum):
    USER = "user"
    ASSISTANT = "assistant"
    TOOL = "tool"


class Priority(int, enum.Enum):
    LOW = 0
    HIGH = 1

    def __new__(cls, value: int) -> Priority:
        member = int.__new__(cls, value)
        member._value_ = value
        return member


class ChatMessage(BaseModel):
    role: Role
    content: str = Field(max_length=65536)


class ChatRequest(BaseModel):
    thread_id: str
    messages: list[ChatMessage]


@dataclass(frozen=True)
class AgentEvent:
    kind: str
    payload: dict[str, str] = field(default_factory=dict)


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int


class Cursor(NamedTuple):
    offset: int
    limit: int


class Notifier(Protocol):
    async def notify(self, user_id: str, event: AgentEvent) -> None: ...
