"""``python -m examples.agent_chat [--port N]``: run the demo on 127.0.0.1.

The port comes from ``--port``, else the ``PORT`` environment variable, else 8000.
The token secret comes from ``AGENT_CHAT_SECRET`` (give every worker the same
one), else a fresh random secret is made for this run; two sign-in links are printed.
Events go through Redis when ``USERSCOPE_REDIS_URL`` and ``USERSCOPE_EVENTS_SECRET``
are set (start several workers on several ports), else through memory (one worker).
"""

from __future__ import annotations

import argparse
import logging
import os
from urllib.parse import urlsplit

import uvicorn

from userscope.events import RedisBroker

from .app import DEMO_USERS, MAX_FRAME_BYTES, create_app, mint_token
from .domain import ENV_MAX_AGENTS, ENV_SECRET, DemoSettings, logger

HOST = "127.0.0.1"


def describe_events(app_broker: object) -> str:
    """One line saying where this worker's events go (no credentials printed)."""
    if isinstance(app_broker, RedisBroker):
        where = urlsplit(os.environ.get("USERSCOPE_REDIS_URL", ""))
        host = f"{where.hostname}:{where.port or 6379}" if where.hostname else "?"
        return f"events: Redis Streams at {host} (shared by every worker with the same settings)"
    return "events: in memory (this worker only; set USERSCOPE_REDIS_URL for several workers)"


def describe_limits(settings: DemoSettings) -> str:
    """One line saying which limits apply: the agent cap is the registry's own."""
    return (
        f"limits: {settings.max_agents_per_user} agents per user (the agent registry's own "
        f"cap, {ENV_MAX_AGENTS}), sessions end after {settings.idle_timeout / 60:g} min idle"
    )


def configure_logging() -> None:
    """One line per sign-in refusal, connection and disconnection, on stderr."""
    demo = logging.getLogger(logger.name)
    demo.setLevel(logging.INFO)
    if any(handler.get_name() == "agent-chat" for handler in demo.handlers):
        return
    handler = logging.StreamHandler()
    handler.set_name("agent-chat")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(message)s", "%H:%M:%S"))
    demo.addHandler(handler)


def main(argv: list[str] | None = None) -> None:
    """Parse the arguments, print the sign-in links and serve the demo."""
    parser = argparse.ArgumentParser(prog="python -m examples.agent_chat", description=__doc__)
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    args = parser.parse_args(argv)

    settings = DemoSettings.from_env()
    app = create_app(settings)
    configure_logging()
    shared = bool(os.environ.get(ENV_SECRET, "").strip())
    print()
    print("userscope agent-chat demo")
    print(f"  {describe_events(app.state.broker)}")
    print(f"  {describe_limits(settings)}")
    if shared:
        print(f"  tokens are signed with {ENV_SECRET}: they work on every worker sharing it")
    else:
        print("  tokens are signed with a secret made for this run: links of earlier runs")
        print("  no longer work")
    print()
    print("Open each link in its own browser window, side by side, and chat:")
    print()
    for user in DEMO_USERS:
        token = mint_token(settings.secret, user)
        print(f"  sign in as {user}: http://{HOST}:{args.port}/#token={token}")
    print()
    print("Ctrl+C stops the server. Sign-ins, refusals and connections are logged below.")
    print(flush=True)
    uvicorn.run(app, host=HOST, port=args.port, log_level="warning", ws_max_size=MAX_FRAME_BYTES)


if __name__ == "__main__":
    main()
