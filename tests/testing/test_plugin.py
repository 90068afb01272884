"""The pytest plugin, run on real test files through pytester (no conftest needed)."""

from __future__ import annotations

import pytest

INI = """
[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
filterwarnings = error
"""

CONTAINER = """
import asyncio
import pytest
from dependency_injector import containers
import userscope as us

class Agent:
    def __init__(self, ctx):
        self.user_id = ctx.user_id

def fragile(ctx):
    yield ctx.user_id
    raise OSError("socket already gone")

loops = []

async def loop_bound(ctx):
    opened = asyncio.get_running_loop()
    yield ctx.user_id
    loops.append(asyncio.get_running_loop() is opened)

class C(containers.DeclarativeContainer):
    context = us.CurrentContext()
    agent = us.RequestScoped(Agent, context)
    fragile = us.UserScoped(fragile, context)
    loop_bound = us.UserScoped(loop_bound, context)

kept = []
"""


@pytest.fixture
def run(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeini(INI)
    return pytester


def outcomes(reprec: pytest.HookRecorder) -> dict[str, tuple[str, str]]:
    """Per test: the worst (phase, outcome) and the text of any failure."""
    seen: dict[str, tuple[str, str]] = {}
    for report in reprec.getreports("pytest_runtest_logreport"):
        name = report.nodeid.rsplit("::", 1)[-1]
        if report.failed:
            seen[name] = (f"{report.when} failed", report.longreprtext)
        else:
            seen.setdefault(name, ("passed", ""))
    return seen


def test_plugin_fixtures_and_checks(run: pytest.Pytester) -> None:
    run.makepyfile(
        test_inner=CONTAINER
        + """
def test_passes(userscope_sessions, userscope_context):
    with userscope_sessions.request(userscope_context("alice")):
        assert C.agent().user_id == "alice"
        assert C.agent() is C.agent()

def test_context_factory(userscope_context):
    first, second = userscope_context("bob"), userscope_context("bob", connection_id="ws-1")
    assert (first.user_id, first.thread_id) == ("bob", "thread-bob")
    assert first.request_id != second.request_id
    assert second.connection_id == "ws-1"

def test_leaks(userscope_sessions, userscope_context):
    with userscope_sessions.request(userscope_context("alice")):
        kept.append(C.agent())

@pytest.mark.userscope_no_leak_check
def test_leak_allowed(userscope_sessions, userscope_context):
    with userscope_sessions.request(userscope_context("carol")):
        kept.append(C.agent())

def test_failing_cleanup(userscope_sessions, userscope_context):
    with userscope_sessions.request(userscope_context("dave")):
        C.fragile()

async def test_async_cleanup_on_the_test_loop(userscope_sessions, userscope_context):
    async with userscope_sessions.request(userscope_context("erin")):
        assert await C.loop_bound() == "erin"

def test_async_cleanup_ran_on_the_same_loop():
    assert loops == [True]

def test_scope_left_open(userscope_sessions, userscope_context):
    userscope_sessions.request(userscope_context("frank")).__enter__()

def test_after_the_abandoned_scope():
    with pytest.raises(us.OutOfScopeError):
        C.agent()
"""
    )
    reprec = run.inline_run("-p", "no:cacheprovider")
    got = outcomes(reprec)
    assert got["test_passes"] == ("passed", "")
    assert got["test_context_factory"] == ("passed", "")
    assert got["test_leak_allowed"] == ("passed", "")
    assert got["test_async_cleanup_on_the_test_loop"] == ("passed", "")
    assert got["test_async_cleanup_ran_on_the_same_loop"] == ("passed", "")
    assert got["test_after_the_abandoned_scope"] == ("passed", "")

    phase, text = got["test_leaks"]
    assert phase == "teardown failed"
    # the core names the level of the scope state that held it (a plain request is one
    # CONNECTION+REQUEST state), so only the stable parts are pinned
    assert "leak: Agent from C.agent (user 'alice', " in text
    assert "scope) is still alive after its scope closed; held by list" in text
    assert "userscope_no_leak_check" in text

    phase, text = got["test_failing_cleanup"]
    assert phase == "teardown failed"
    assert "1 cleanup(s) failed: cleanup of C.fragile failed: OSError('socket already gone')" in (
        text
    )

    phase, text = got["test_scope_left_open"]
    assert phase == "teardown failed"
    assert "1 scope(s) still open at teardown (1 connection, 1 request)" in text


def test_async_fixture_and_user_only_scope_left_open(run: pytest.Pytester) -> None:
    run.makepyfile(
        test_inner=CONTAINER
        + """
async def test_async_fixture(userscope_asessions, userscope_context):
    async with userscope_asessions.request(userscope_context("alice")):
        assert await C.loop_bound() == "alice"
    assert loops == []  # the USER scope stays open until teardown

def test_user_scope_left_open(userscope_sessions, userscope_context):
    userscope_sessions.user(userscope_context("bob")).__enter__()

def test_leaked_scope_does_not_reach_the_next_test():
    assert us.current_scope() is None
"""
    )
    got = outcomes(run.inline_run("-p", "no:cacheprovider"))
    assert got["test_async_fixture"] == ("passed", "")
    phase, text = got["test_user_scope_left_open"]
    assert phase == "teardown failed"
    assert "1 scope(s) still open at teardown (0 connection, 0 request)" in text
    assert got["test_leaked_scope_does_not_reach_the_next_test"] == ("passed", "")


def test_marker_is_registered(run: pytest.Pytester) -> None:
    result = run.runpytest_inprocess("--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.userscope_no_leak_check:*"])


def test_a_handled_500_is_not_a_leak_but_a_kept_instance_is(run: pytest.Pytester) -> None:
    # The plugin's leak check used to fail every test whose endpoint answered 500: the
    # traceback captured for the 500 kept the request's instances alive (issue 14).
    run.makepyfile(
        test_app="""
import time
import jwt
from fastapi import FastAPI
from fastapi.testclient import TestClient
from dependency_injector import containers
import userscope as us
from userscope.adapters.fastapi import Inject, JWTAuthenticator, install

SECRET = "plugin-test-secret-5d1f9a3c7e2b8046f1a9"

class Agent:
    pass

class C(containers.DeclarativeContainer):
    agent = us.RequestScoped(Agent)

kept = []

def client(sessions, keep):
    app = FastAPI()
    install(app, C(), sessions, JWTAuthenticator(key=SECRET, algorithms=["HS256"]))

    @app.get("/boom")
    async def boom(agent: Agent = Inject(C.agent)):
        if keep:
            kept.append(agent)
        raise RuntimeError("the agent crashed")

    token = jwt.encode({"sub": "alice", "exp": time.time() + 60}, SECRET, algorithm="HS256")
    test_client = TestClient(app, raise_server_exceptions=False)
    test_client.headers["Authorization"] = f"Bearer {token}"
    return test_client

def test_handled_500(userscope_sessions):
    with client(userscope_sessions, keep=False) as http:
        assert http.get("/boom").status_code == 500

def test_kept_after_500(userscope_sessions):
    with client(userscope_sessions, keep=True) as http:
        assert http.get("/boom").status_code == 500
"""
    )
    seen = outcomes(run.inline_run("-p", "no:cacheprovider"))
    assert seen["test_handled_500"] == ("passed", "")
    when, text = seen["test_kept_after_500"]
    assert when == "teardown failed"
    assert "Agent from C.agent" in text


def test_report_header_says_which_runtime_runs(run: pytest.Pytester) -> None:
    from userscope import _mode

    result = run.runpytest_inprocess("--co")
    result.stdout.fnmatch_lines([f"userscope: {_mode.describe()}"])
