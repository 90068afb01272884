"""``python -m examples.agent_chat [--port N]``: run the demo on 127.0.0.1.

The port comes from ``--port``, else the ``PORT`` environment variable, else 8000.
A fresh random HS256 secret is made for each run, and two sign-in links are printed.
"""

from __future__ import annotations

import argparse
import os
import secrets

import uvicorn

from .app import DEMO_USERS, create_app, mint_token
from .domain import DemoSettings

HOST = "127.0.0.1"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m examples.agent_chat", description=__doc__)
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    args = parser.parse_args(argv)

    settings = DemoSettings(secret=secrets.token_urlsafe(32))
    app = create_app(settings)
    print("userscope agent-chat demo: open one link per browser tab, then chat.")
    for user in DEMO_USERS:
        token = mint_token(settings.secret, user)
        print(f"  sign in as {user}: http://{HOST}:{args.port}/#token={token}")
    print("(tokens are signed with a random secret made for this run; Ctrl+C to stop)", flush=True)
    uvicorn.run(app, host=HOST, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
