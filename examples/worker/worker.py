"""A background worker that never calls `validate()`: a captive dependency is still refused.

A worker (or a CLI, or a custom server) builds its container and opens scopes itself. A
`Singleton` over a `RequestScoped` agent would hand the first user's agent to everyone;
userscope validates the container at the first scoped resolve instead, so the very first
job fails with the dependency path and no agent is ever built.

Run: python examples/worker/worker.py
"""

from __future__ import annotations

import asyncio

from dependency_injector import containers, providers

import userscope as us


class Agent:
    def __init__(self, ctx: us.UserExecutionContext) -> None:
        self.user_id = ctx.user_id

    def run(self, job: str) -> str:
        return f"{self.user_id}: {job}"


class Dispatcher:
    """Meant to be shared by every job; by mistake it keeps one agent."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent

    def handle(self, job: str) -> str:
        return self.agent.run(job)


class BuggyContainer(containers.DeclarativeContainer):
    context = us.CurrentContext()
    agent = us.RequestScoped(Agent, context)
    dispatcher = providers.Singleton(Dispatcher, agent)  # captive: one agent for everyone


class FixedContainer(containers.DeclarativeContainer):
    context = us.CurrentContext()
    agent = us.RequestScoped(Agent, context)
    dispatcher = us.RequestScoped(Dispatcher, agent)  # one dispatcher per job


JOBS = [("alice", "summarise"), ("bob", "translate"), ("alice", "reply")]


async def work(container: containers.Container, sessions: us.UserSessions) -> list[str]:
    """Run every job in its own request scope; return what each job produced."""
    done: list[str] = []
    for user, job in JOBS:
        ctx = us.UserExecutionContext(user_id=user, thread_id=f"{user}-jobs")
        try:
            async with sessions.request(ctx):
                done.append(container.dispatcher().handle(job))
        except us.CaptiveDependencyError as err:
            done.append(f"refused: {err.paths[0]}")
    return done


async def main() -> dict[str, list[str]]:
    """Run the jobs with the buggy and the fixed container (no `validate()` anywhere)."""
    sessions = us.UserSessions()
    try:
        return {
            "buggy": await work(BuggyContainer(), sessions),
            "fixed": await work(FixedContainer(), sessions),
        }
    finally:
        await sessions.aclose()


if __name__ == "__main__":
    for name, results in asyncio.run(main()).items():
        print(f"{name}:")
        for line in results:
            print(f"  {line}")
