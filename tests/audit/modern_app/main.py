"""FastAPI entry point."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from dependency_injector.wiring import Provide, inject
from fastapi import APIRouter, Depends, FastAPI, WebSocket
from fastapi.middleware.cors import CORSMiddleware

from .container import Container
from .models import ChatRequest
from .services import AgentRunner
from .settings import ALLOWED_ORIGINS

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/api")
container = Container()
app = FastAPI(title="modern agent backend")
app.add_middleware(CORSMiddleware, allow_origins=ALLOWED_ORIGINS)


@router.post("/chat")
@inject
async def chat(
    request: ChatRequest,
    runner: Annotated[AgentRunner, Depends(Provide[Container.runner])],
) -> dict[str, Any]:
    text = await runner.run(request.thread_id, request.messages[-1].content)
    return {"text": text}


@router.websocket("/ws")
async def websocket_endpoint(websocket: WebSocket) -> None:
    await websocket.accept()
    async for message in websocket.iter_text():
        await websocket.send_text(message)


app.include_router(router)
