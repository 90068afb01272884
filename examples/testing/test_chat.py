"""Testing the example backend with userscope's pytest plugin and `userscope.testing`.

No conftest: the fixtures come from the plugin installed with userscope.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import userscope as us
from examples.testing.chat import LLM, Bridge, Container, handle_message
from userscope.testing import assert_isolated, override

MakeContext = Callable[..., us.UserExecutionContext]


class FakeLLM(LLM):
    def complete(self, prompt: str) -> str:
        return "canned"


def test_one_run(userscope_sessions: us.UserSessions, userscope_context: MakeContext) -> None:
    container = Container()
    with userscope_sessions.request(userscope_context("alice")):
        agent = container.agent()
        assert agent.reply("hi") == "echo: hi"
        assert agent.bridge.sent == ["echo: hi"]
    # the fixture closes the sessions at teardown and fails the test on leaks


async def test_async_handler(
    userscope_sessions: us.UserSessions, userscope_context: MakeContext
) -> None:
    container = Container()
    assert await handle_message(container, userscope_sessions, userscope_context("bob"), "yo")
    async with userscope_sessions.user(userscope_context("bob")):
        assert (await container.memory.async_()).lines == ["yo"]


def test_override_with_a_shared_value(
    userscope_sessions: us.UserSessions, userscope_context: MakeContext
) -> None:
    container = Container()
    with override(container.llm, FakeLLM()), userscope_sessions.request(userscope_context()):
        assert container.agent().reply("hi") == "canned"


def test_override_keeping_the_scope(
    userscope_sessions: us.UserSessions, userscope_context: MakeContext
) -> None:
    container = Container()
    closed: list[str] = []

    def recording_bridge() -> Iterator[Bridge]:
        bridge = Bridge("recorder")
        yield bridge
        closed.append(bridge.user_id)

    with override(container.bridge, recording_bridge, scoped=True):
        with userscope_sessions.request(userscope_context("alice")):
            assert container.agent().bridge is container.bridge()  # one per connection
        assert closed == ["recorder"]  # cleaned up when the connection scope exited


@override(Container.llm, FakeLLM())
def test_override_as_a_decorator(
    userscope_sessions: us.UserSessions, userscope_context: MakeContext
) -> None:
    with userscope_sessions.request(userscope_context()):
        assert Container().agent().reply("x") == "canned"  # containers made inside see it


def test_users_are_isolated(userscope_sessions: us.UserSessions) -> None:
    container = Container()
    report = assert_isolated(
        container,
        userscope_sessions,
        providers=[container.agent, container.memory, container.bridge],
        users=20,
        threads=4,
    )
    assert report.users == 40
