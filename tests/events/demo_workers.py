"""Real uvicorn worker processes of the agent-chat demo sharing one Redis (test helper).

Each worker is ``python -m uvicorn examples.agent_chat.app:create_app --factory`` on
its own free loopback port, configured only through the environment — the same
way an operator would start several workers. Workers are killed with SIGKILL
(never left behind): :meth:`DemoCluster.close` runs in the fixture's ``finally``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from events_support import RedisServer, free_port
from examples.agent_chat import mint_token

ROOT = Path(__file__).resolve().parents[2]
TOKEN_SECRET = "workers-token-secret-workers-token-secret-0123"
EVENTS_SECRET = "workers-events-secret-0123456789abcdef0123456789"


@dataclass
class DemoWorker:
    """One uvicorn process serving the demo app on ``port``."""

    name: str
    port: int
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        """Spawn the process (the port is kept across restarts)."""
        assert not self.alive, f"{self.name} is already running"
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "examples.agent_chat.app:create_app",
                    "--factory",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--log-level",
                    "warning",
                    "--ws",
                    "websockets-sansio",
                    "--lifespan",
                    "on",
                ],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def wait_ready(self, timeout: float = 20.0) -> None:
        """Block until ``GET /health`` answers; fail with the worker's log otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive:
                break
            try:
                with urllib.request.urlopen(f"{self.http}/health", timeout=0.5) as reply:
                    if reply.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                time.sleep(0.05)
        log = self.log.read_text(errors="replace")[-3000:]
        self.kill()
        raise RuntimeError(f"demo worker {self.name} on port {self.port} did not start:\n{log}")

    def kill(self) -> None:
        """SIGKILL the process (no cleanup runs in it, as when a host dies) and reap it."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None


@dataclass
class DemoCluster:
    """Two demo workers and the Redis they share."""

    redis: RedisServer
    workers: list[DemoWorker] = field(default_factory=list)

    @classmethod
    def create(cls, redis: RedisServer, workdir: Path, **settings: str) -> DemoCluster:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("USERSCOPE_", "AGENT_"))}
        env.update(
            {
                "PYTHONPATH": str(ROOT),
                "USERSCOPE_REDIS_URL": redis.url,
                "USERSCOPE_EVENTS_SECRET": EVENTS_SECRET,
                "USERSCOPE_EVENTS_PREFIX": f"workers:{os.getpid()}",
                "AGENT_CHAT_SECRET": TOKEN_SECRET,
                **settings,
            }
        )
        cluster = cls(redis)
        for name in ("w1", "w2"):
            cluster.workers.append(DemoWorker(name, free_port(), env, workdir / f"{name}.log"))
        return cluster

    def ensure_running(self) -> None:
        """(Re)start every worker that is not running and wait until all answer."""
        started = [w for w in self.workers if not w.alive]
        for worker in started:
            worker.start()
        for worker in started:
            worker.wait_ready()

    def close(self) -> None:
        for worker in self.workers:
            worker.kill()


def bearer(user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(TOKEN_SECRET, user)}"}


def post_run(worker: DemoWorker, user: str, text: str, **body: Any) -> str:
    """``POST /api/runs`` on ``worker`` as ``user``; returns the run id (expects 202)."""
    request = urllib.request.Request(
        f"{worker.http}/api/runs",
        data=json.dumps({"text": text, **body}).encode(),
        headers={"Content-Type": "application/json", **bearer(user)},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        assert reply.status == 202, reply.status
        result: dict[str, str] = json.loads(reply.read())
    assert result["user_id"] == user
    return result["run_id"]
