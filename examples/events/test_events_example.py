"""The events example runs, and each socket gets only its own user's events, in order."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from examples.events import agent_events


async def test_each_socket_receives_only_its_users_runs() -> None:
    sockets = await agent_events.main()
    alice, bob = sockets["alice"], sockets["bob"]
    alice_tokens = [m["event"]["text"] for m in alice.received if m["event"]["type"] == "token"]
    bob_tokens = [m["event"]["text"] for m in bob.received if m["event"]["type"] == "token"]
    assert alice_tokens == ["hello", "there", "how", "are", "you"]
    assert bob_tokens == ["secret", "plans", "for", "bob"]
    # each run is framed by run_started ... run_finished, and ids only go up
    for socket, runs in ((alice, 2), (bob, 1)):
        kinds = [m["event"]["type"] for m in socket.received]
        assert kinds.count("run_started") == runs
        assert kinds.count("run_finished") == runs
        assert "run_lost" not in kinds
        ids = [tuple(map(int, m["id"].split("-"))) for m in socket.received]
        assert ids == sorted(ids)
        assert socket.closed is None  # the connection ended normally, no resync needed


def test_example_runs_as_a_script() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("USERSCOPE_")}
    out = subprocess.run(
        [sys.executable, str(Path(agent_events.__file__))],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env=env,
    )
    assert "alice: 9 events" in out.stdout
    assert "bob: 6 events" in out.stdout
