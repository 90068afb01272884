"""A real OpenID Connect provider for tests: ``oidc-provider-mock`` as a child process.

This is how a test suite mints real tokens for an app that uses
``JWTAuthenticator.from_oidc``: start the provider on a loopback port, sign a user
in through its authorization-code flow, and send the ID token it returns. Each
start makes a new RSA signing key, so :meth:`OIDCProvider.restart` rotates keys
while the issuer URL stays the same; :meth:`OIDCProvider.stop` takes the JWKS
endpoint down.

Example:
    >>> from pathlib import Path
    >>> import tempfile
    >>> with oidc_provider(Path(tempfile.mkdtemp())) as idp:  # doctest: +SKIP
    ...     token = idp.id_token("alice", client_id="chat-api")
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

__all__ = ["OIDCProvider", "free_port", "oidc_provider"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class OIDCProvider:
    """``python -m oidc_provider_mock`` on a loopback port, as a child process.

    Each start generates a new RSA signing key, so :meth:`restart` rotates the
    keys while the issuer URL stays the same.
    """

    port: int
    log: Path
    token_max_age: int = 300
    users: tuple[dict[str, Any], ...] = ()
    process: subprocess.Popen[bytes] | None = None

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        command = [
            sys.executable,
            "-m",
            "oidc_provider_mock",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--token-max-age",
            str(self.token_max_age),
        ]
        for user in self.users:
            command += ["--user-claims", json.dumps(user)]
        with self.log.open("ab") as out:
            env = {**os.environ, "NO_COLOR": "1"}
            self.process = subprocess.Popen(command, stdout=out, stderr=out, env=env)
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{self.issuer}/.well-known/openid-configuration", timeout=1)
                return
            except httpx.TransportError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    log = self.log.read_text()
                    raise RuntimeError(f"the OIDC provider did not start: {log}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - a stuck provider
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def jwks_hits(self) -> int:
        """How many times the JWKS endpoint was fetched (from the provider's access log)."""
        return sum(1 for line in self.log.read_text().splitlines() if "GET /jwks" in line)

    def id_token(self, sub: str, *, client_id: str) -> str:
        """Sign ``sub`` in through the provider's real authorization-code flow."""
        redirect = "http://127.0.0.1/callback"
        with httpx.Client(base_url=self.issuer, timeout=10) as client:
            authorize = client.post(
                "/oauth2/authorize",
                params={
                    "client_id": client_id,
                    "redirect_uri": redirect,
                    "response_type": "code",
                    "scope": "openid profile",
                },
                data={"sub": sub},
            )
            assert authorize.status_code == 302, authorize.text
            query = urllib.parse.urlsplit(authorize.headers["location"]).query
            code = urllib.parse.parse_qs(query)["code"][0]
            issued = client.post(
                "/oauth2/token",
                data={
                    "grant_type": "authorization_code",
                    "code": code,
                    "redirect_uri": redirect,
                    "client_id": client_id,
                    "client_secret": "test-client-secret",
                },
            )
            assert issued.status_code == 200, issued.text
            return str(issued.json()["id_token"])


@contextmanager
def oidc_provider(tmp_path: Path, **options: Any) -> Iterator[OIDCProvider]:
    provider = OIDCProvider(port=free_port(), log=tmp_path / "oidc-provider.log", **options)
    provider.start()
    try:
        yield provider
    finally:
        provider.stop()
