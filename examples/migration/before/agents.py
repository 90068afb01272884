"""Agents and the registry that maps conversation threads to them."""

from __future__ import annotations


class Agent:
    """A toy agent that remembers the conversation of one thread."""

    def __init__(self, thread_id: str) -> None:
        self.thread_id = thread_id
        self.history: list[str] = []

    def answer(self, text: str) -> str:
        self.history.append(text)
        return f"message {len(self.history)} of thread {self.thread_id}: {text}"


class AgentRegistry:
    """Maps thread ids to their running agents."""

    def __init__(self) -> None:
        self.agents: dict[str, Agent] = {}

    def get_or_create(self, thread_id: str) -> Agent:
        agent = self.agents.get(thread_id)
        if agent is None:
            agent = self.agents[thread_id] = Agent(thread_id)
        return agent

    def pop(self, thread_id: str) -> Agent | None:
        return self.agents.pop(thread_id, None)


global_registry = AgentRegistry()


def get_registry() -> AgentRegistry:
    return global_registry
