"""``python -m examples.agent_chat [--port N]``: run the demo on 127.0.0.1.

The port comes from ``--port``, else the ``PORT`` environment variable, else 8000.
The token secret comes from ``AGENT_CHAT_SECRET`` (give every worker the same
one), else a fresh random secret is made for this run; two sign-in links are printed.
Events go through Redis when ``USERSCOPE_REDIS_URL`` and ``USERSCOPE_EVENTS_SECRET``
are set (start several workers on several ports), else through memory (one worker).
"""

from __future__ import annotations

import argparse
import os
from urllib.parse import urlsplit

import uvicorn

from userscope.events import RedisBroker

from .app import DEMO_USERS, create_app, mint_token
from .domain import ENV_SECRET, DemoSettings

HOST = "127.0.0.1"


def describe_events(app_broker: object) -> str:
    """One line saying where this worker's events go (no credentials printed)."""
    if isinstance(app_broker, RedisBroker):
        where = urlsplit(os.environ.get("USERSCOPE_REDIS_URL", ""))
        host = f"{where.hostname}:{where.port or 6379}" if where.hostname else "?"
        return f"events: Redis Streams at {host} (shared by every worker with the same settings)"
    return "events: in memory (this worker only; set USERSCOPE_REDIS_URL for several workers)"


def main(argv: list[str] | None = None) -> None:
    """Parse the arguments, print the sign-in links and serve the demo."""
    parser = argparse.ArgumentParser(prog="python -m examples.agent_chat", description=__doc__)
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    args = parser.parse_args(argv)

    settings = DemoSettings.from_env()
    app = create_app(settings)
    print("userscope agent-chat demo: open one link per browser tab, then chat.")
    for user in DEMO_USERS:
        token = mint_token(settings.secret, user)
        print(f"  sign in as {user}: http://{HOST}:{args.port}/#token={token}")
    if os.environ.get(ENV_SECRET, "").strip():
        print(f"(tokens are signed with {ENV_SECRET}: they work on every worker sharing it)")
    else:
        print("(tokens are signed with a random secret made for this run; Ctrl+C to stop)")
    print(describe_events(app.state.broker), flush=True)
    uvicorn.run(app, host=HOST, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
