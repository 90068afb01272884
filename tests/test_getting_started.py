"""docs/getting-started.md runs as copied: its files, its server command, its commands.

The files are written to a temporary directory; the server is started with the page's
own command (``uvicorn app:app``, a real uvicorn with ``uvicorn[standard]``'s
WebSocket library) and the page's commands run in ``bash``. Only the port changes:
8000 becomes a free one.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGE = (ROOT / "docs" / "getting-started.md").read_text()
BIN = str(Path(sys.executable).parent)  # `python`, `uvicorn` of this environment


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", PAGE, re.DOTALL)


def files() -> dict[str, str]:
    named = {}
    for block in blocks("python"):
        first = block.splitlines()[0]
        found = re.fullmatch(r"# (\w+\.py)", first)
        assert found, f"every python block starts with its file name, not {first!r}"
        named[found[1]] = block
    return named


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def shell(command: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", command],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    for name, text in files().items():
        (tmp_path / name).write_text(text)
    return tmp_path


@pytest.fixture
def env() -> dict[str, str]:
    return {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "PYTHONWARNINGS": "error"}


def test_the_page_has_its_four_files_and_commands() -> None:
    assert list(files()) == ["first_container.py", "app.py", "mint_token.py", "client.py"]
    install, run, try_it = blocks("bash")
    assert 'pip install "userscope[fastapi]" "uvicorn[standard]"' in install
    assert run.splitlines()[-1] == "uvicorn app:app --port 8000"
    assert "python client.py" in try_it


def test_first_container_prints_what_the_page_shows(project: Path, env: dict[str, str]) -> None:
    done = shell("python first_container.py", project, env)
    assert done.returncode == 0, done.stderr
    assert done.stdout == blocks("text")[0]


def test_secret_command_makes_a_strong_secret(project: Path, env: dict[str, str]) -> None:
    export = blocks("bash")[1].splitlines()[0]
    done = shell(f'{export}\nprintf %s "$APP_SECRET"', project, env)
    assert done.returncode == 0, done.stderr
    assert len(done.stdout) >= 32


@pytest.fixture
def server(project: Path, env: dict[str, str]) -> Iterator[tuple[int, dict[str, str]]]:
    port = free_port()
    env = {**env, "APP_SECRET": "getting-started-test-secret-0123456789"}
    command = blocks("bash")[1].splitlines()[-1].replace("8000", str(port))
    process = subprocess.Popen(
        ["bash", "-c", f"exec {command}"],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    process.kill()
                    out = process.communicate(timeout=10)[0]
                    pytest.fail(f"`{command}` did not start:\n{out}")
                time.sleep(0.05)
        yield port, env
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.communicate(timeout=15)
        except subprocess.TimeoutExpired:  # pragma: no cover - shows up as a failing test
            process.kill()
            process.communicate(timeout=10)


def test_app_token_and_client_print_what_the_page_shows(
    project: Path, server: tuple[int, dict[str, str]]
) -> None:
    port, env = server
    client = project / "client.py"
    client.write_text(client.read_text().replace("8000", str(port)))
    try_it = blocks("bash")[2].replace("8000", str(port))
    done = shell(try_it, project, env)
    assert done.returncode == 0, done.stderr
    assert done.stdout == blocks("text")[1]
