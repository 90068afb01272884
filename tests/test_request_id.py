"""`_speedups.request_id`: a random UUID4 per request or message, never the same twice.

Compiled, the ids come from a pool of ``os.urandom()`` bytes (one system call per 256
ids): these tests hold it to UUID4's format, to uniqueness across threads racing for the
pool, and to a forked child never repeating its parent's next ids. Runs in both modes.
"""

from __future__ import annotations

import os
import re
import threading
import uuid

import pytest

import userscope as us
from support import hang_guard, run_fork_script, run_threads
from userscope._speedups import request_id

GUARD = 30.0
UUID4_HEX = re.compile(r"[0-9a-f]{12}4[0-9a-f]{3}[89ab][0-9a-f]{15}")


def test_an_id_is_a_uuid4_in_32_lowercase_hex_digits() -> None:
    for _ in range(600):  # past two refills of the compiled pool
        rid = request_id()
        assert UUID4_HEX.fullmatch(rid), rid
        parsed = uuid.UUID(rid)
        assert (parsed.version, parsed.variant, parsed.hex) == (4, uuid.RFC_4122, rid)


def test_for_request_gives_each_child_a_fresh_id() -> None:
    ctx = us.UserExecutionContext(user_id="alice", thread_id="t-1")
    ids = {ctx.for_request().request_id for _ in range(1_000)}
    assert len(ids) == 1_000
    assert all(UUID4_HEX.fullmatch(rid) for rid in ids)
    assert us.UserExecutionContext(user_id="a", thread_id="t").request_id not in ids


def test_threads_racing_for_the_pool_never_share_an_id() -> None:
    per_thread, threads = 20_000, 4
    barrier = threading.Barrier(threads, timeout=GUARD)
    found: list[list[str]] = [[] for _ in range(threads)]

    def take(index: int) -> None:
        barrier.wait()
        out = found[index]
        for _ in range(per_thread):
            out.append(request_id())

    with hang_guard():
        workers = [threading.Thread(target=take, args=(i,)) for i in range(threads)]
        run_threads(workers, "a thread hung")
    every = [rid for ids in found for rid in ids]
    assert len(every) == per_thread * threads
    assert len(set(every)) == len(every)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork() on this platform")
def test_a_forked_child_never_repeats_its_parents_next_ids() -> None:
    """The pool is filled before the fork; parent and child then draw 100 ids each: none
    in common (a child that kept the parent's pool would give the same ones). In a fresh
    interpreter: forking the test process would copy its threads' locks."""
    script = """
        import os, sys
        from userscope._speedups import request_id

        request_id()  # the pool is filled here, in the parent
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read)
            os.write(write, " ".join(request_id() for _ in range(100)).encode())
            os._exit(0)
        os.close(write)
        mine = {request_id() for _ in range(100)}
        chunks = []
        while chunk := os.read(read, 65536):
            chunks.append(chunk)
        os.waitpid(pid, 0)
        theirs = set(b"".join(chunks).decode().split())
        sys.exit(0 if len(theirs) == 100 and not mine & theirs else 3)
        """
    run_fork_script(script, GUARD)
