"""Application settings: immutable, process-wide and safe to share."""

from __future__ import annotations

import os
from functools import lru_cache

from pydantic import BaseModel, ConfigDict


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True)

    database_url: str = "postgresql://localhost/app"
    redis_url: str = "redis://localhost:6379/0"
    request_timeout: float = 10.0


@lru_cache
def get_settings() -> Settings:
    return Settings(database_url=os.environ.get("DATABASE_URL", "postgresql://localhost/app"))


settings = get_settings()
DEFAULT_MODEL = "gpt-4o-mini"
MAX_MESSAGE_BYTES = 64 * 1024
ALLOWED_ORIGINS = ["http://localhost:3000"]
