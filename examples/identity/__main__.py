"""Run the notes API against a local mock OpenID Connect provider.

``python -m examples.identity`` starts ``oidc-provider-mock`` on a free loopback
port, the notes API on ``127.0.0.1:8002`` (``--port`` to change it), and prints
a token for ``alice`` of tenant ``acme`` (a writer) to try it with curl.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import uvicorn

from examples.identity.app import create_app
from examples.identity.mock_idp import oidc_provider

AUDIENCE = "notes-api"
USERS = (
    {"sub": "alice", "tenant": "acme", "roles": ["writer"]},
    {"sub": "bob", "tenant": "globex", "roles": ["reader"]},
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8002)
    port = parser.parse_args().port
    with oidc_provider(Path(tempfile.mkdtemp()), users=USERS) as idp:
        token = idp.id_token("alice", client_id=AUDIENCE)
        print(f"identity provider: {idp.issuer}")
        print(f'curl -H "Authorization: Bearer {token}" http://127.0.0.1:{port}/me')
        uvicorn.run(create_app(idp.issuer, AUDIENCE), host="127.0.0.1", port=port)


if __name__ == "__main__":
    main()
