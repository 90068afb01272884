"""The container: stateless services are Singletons, per-user objects are scoped."""

from __future__ import annotations

import httpx
from dependency_injector import containers, providers

from userscope import CurrentContext, RequestScoped, UserScoped

from .services import AgentRunner, Conversation, EventSerializer
from .settings import Settings


class Container(containers.DeclarativeContainer):
    config = providers.Configuration()
    settings = providers.Singleton(Settings)
    http_client = providers.Singleton(httpx.AsyncClient, timeout=10.0)
    serializer = providers.ThreadSafeSingleton(EventSerializer)
    context = CurrentContext()
    conversation = UserScoped(Conversation, context=context)
    runner = RequestScoped(AgentRunner, client=http_client, conversation=conversation)
    mapper = providers.Factory(dict)
