"""`_speedups.running_loop` and `running_task`: always asyncio's own answer, however loops
and threads change.

Compiled on Python 3.11 it caches the loop per running-loop holder (asyncio checks the
holder against ``getpid()``, a system call, on every lookup); these tests hold it to
``asyncio._get_running_loop()`` across sequential loops, concurrent threads and a fork.
Runs in both modes (the pure twin is asyncio's function itself).
"""

from __future__ import annotations

import asyncio
import os
import threading

import pytest

from support import hang_guard, run_fork_script, run_threads
from userscope._speedups import running_loop, running_task

#: bound of every wait here (`run_threads` joins within 30 s; `hang_guard` dumps the stacks)
GUARD = 30.0


def test_no_loop_outside_and_the_running_one_inside() -> None:
    assert running_loop() is None

    async def inside() -> None:
        assert running_loop() is asyncio.get_running_loop()
        assert running_loop() is asyncio.get_running_loop()  # again: the cached answer

    asyncio.run(inside())
    assert running_loop() is None


def test_each_new_loop_of_a_thread_is_seen_not_the_last_one() -> None:
    seen: list[asyncio.AbstractEventLoop | None] = []

    async def record() -> None:
        seen.append(running_loop())
        seen.append(running_loop())

    loops = [asyncio.new_event_loop() for _ in range(3)]
    try:
        for loop in loops:
            loop.run_until_complete(record())
            # a loop that stopped is not running, even right after being cached
            assert running_loop() is None
    finally:
        for loop in loops:
            loop.close()
    assert seen == [loop for loop in loops for _ in range(2)]


def test_a_callback_outside_any_task_sees_its_loop_and_no_task() -> None:
    loop = asyncio.new_event_loop()
    try:
        found: list[object] = []
        loop.call_soon(lambda: found.append((running_loop(), running_task())))
        loop.call_soon(loop.stop)
        loop.run_forever()
        assert found == [(loop, None)]
    finally:
        loop.close()


def test_the_running_task_is_asyncios_current_task_and_none_off_a_loop() -> None:
    assert running_task() is None  # no loop: None, not asyncio's RuntimeError

    async def inside() -> None:
        assert running_task() is asyncio.current_task()
        child = asyncio.create_task(asyncio.sleep(0, result="child"))
        assert running_task() is asyncio.current_task()  # still this task, not the child
        await child

    asyncio.run(inside())
    assert running_task() is None


def test_threads_each_running_a_loop_always_see_their_own() -> None:
    """Two threads on their own loops, in lockstep: every lookup alternates between them,
    so a cache that answered for the wrong thread's holder would be caught."""
    rounds = 2_000
    barrier = threading.Barrier(2, timeout=GUARD)
    wrong: list[tuple[int, object, object]] = []

    def run(index: int) -> None:
        async def main() -> None:
            mine = asyncio.get_running_loop()
            for turn in range(rounds):
                if turn % 100 == 0:
                    barrier.wait()
                found = running_loop()
                if found is not mine:
                    wrong.append((index, found, mine))
                task = running_task()
                if task is not asyncio.current_task():
                    wrong.append((index, task, asyncio.current_task()))
                if turn % 7 == 0:
                    await asyncio.sleep(0)

        asyncio.run(main())

    with hang_guard():
        threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
        run_threads(threads, "a thread hung")
    assert wrong == []


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork() on this platform")
def test_a_forked_child_answers_as_asyncio_does() -> None:
    """Forked from inside a running loop: the child's lookup agrees with asyncio's (on
    3.11, "no loop": the holder belongs to the parent's process; the cache is dropped at
    fork). Run in a fresh interpreter: forking the test process itself would copy its
    threads' locks."""
    script = """
        import asyncio, os, sys
        from userscope._speedups import running_loop

        async def main():
            assert running_loop() is asyncio.get_running_loop()  # cached in the parent
            pid = os.fork()
            if pid == 0:
                ok = running_loop() is asyncio._get_running_loop()
                os._exit(0 if ok else 3)
            _, status = os.waitpid(pid, 0)
            sys.exit(os.waitstatus_to_exitcode(status))

        asyncio.run(main())
        """
    run_fork_script(script, GUARD)
