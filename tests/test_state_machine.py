"""Stateful property test: interleave scopes of several users against a model.

Each user's scopes run in that user's own ``contextvars.Context`` (``ctx.run``), the way
separate tasks would, and are entered and left explicitly (``__enter__``/``__exit__`` on
the scope objects kept by the machine), so scopes of different users interleave freely
while each user's own scopes nest properly. A fake clock drives idle and age expiry;
``max_users=3`` over four users forces evictions.

Invariants after every step: no instance is shared across users; a scope's instance is
cached for the whole scope; every finalizer of a closed scope ran exactly once and no
other did; ``stats()`` matches the model; ``IsolationError`` happens only when expected.
"""

from __future__ import annotations

import contextvars
import itertools
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from dependency_injector import containers
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

import userscope as us

USERS = ("u0", "u1", "u2", "u3")
MAX_USERS = 3
IDLE_TIMEOUT = 30.0
MAX_AGE = 100.0


class Inst:
    """A scoped instance that counts its finalizations."""

    def __init__(self, level: str, user: str, serial: int) -> None:
        self.level = level
        self.user = user
        self.serial = serial
        self.finalized = 0

    def __repr__(self) -> str:
        return f"Inst({self.level}, {self.user}, #{self.serial}, finalized={self.finalized})"


class Pair:
    def __init__(self, conn: Inst, user: Inst) -> None:
        self.conn = conn
        self.user = user


@dataclass
class ModelSession:
    user: str
    serial: int
    created_at: float
    idle_since: float
    active: int = 0
    retired: bool = False
    finished: bool = False


@dataclass
class Entry:
    kind: str  # "user" | "connection" | "request"
    cm: Any
    session: ModelSession
    req_key: int | None
    conn_key: int | None
    opened: list[tuple[str, int]] = field(default_factory=list)  # cache keys it closes
    connection: bool = False
    request: bool = False


class ScopeMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.sessions = us.UserSessions(
            max_users=MAX_USERS,
            idle_timeout=IDLE_TIMEOUT,
            max_age=MAX_AGE,
            clock=lambda: self.now,
        )
        self.serials = itertools.count()
        self.container = self._container()
        self.contexts = {user: contextvars.Context() for user in USERS}
        self.stacks: dict[str, list[Entry]] = {user: [] for user in USERS}
        self.table: OrderedDict[str, ModelSession] = OrderedDict()
        self.cache: dict[tuple[str, int], Inst] = {}
        self.pairs: dict[int, Pair] = {}  # REQUEST-scoped, no finalizer, by request key
        self.finalized_keys: set[tuple[str, int]] = set()
        self.seen: dict[int, tuple[str, int]] = {}  # id(inst) -> cache key, all ever created
        self.instances: list[Inst] = []
        self.evictions = 0
        self.expired = 0

    def _container(self) -> Any:
        def factory(level: str) -> Any:
            def make(ctx: us.UserExecutionContext) -> Iterator[Inst]:
                inst = Inst(level, ctx.user_id, next(self.serials))
                yield inst
                inst.finalized += 1

            return make

        class C(containers.DeclarativeContainer):
            context = us.CurrentContext()
            user = us.UserScoped(factory("user"), context)
            conn = us.ConnectionScoped(factory("conn"), context)
            req = us.RequestScoped(factory("req"), context)
            pair = us.RequestScoped(Pair, conn, user)

        return C()

    # -- model helpers --------------------------------------------------------------------
    def _expired(self, session: ModelSession) -> bool:
        return (
            self.now - session.created_at >= MAX_AGE
            or self.now - session.idle_since >= IDLE_TIMEOUT
        )

    def _finish(self, session: ModelSession) -> None:
        session.finished = True
        self._finalize([("user", session.serial)])

    def _finalize(self, keys: list[tuple[str, int]]) -> None:
        for key in keys:
            if key[0] == "req":
                self.pairs.pop(key[1], None)
            if key in self.cache:
                del self.cache[key]
                self.finalized_keys.add(key)

    def _retire(self, session: ModelSession) -> None:
        if self.table.get(session.user) is session:
            del self.table[session.user]
        session.retired = True

    def _ctx(self, user: str) -> us.UserExecutionContext:
        return us.UserExecutionContext(
            user_id=user, thread_id="t", request_id=f"r{next(self.serials)}"
        )

    # -- rules ----------------------------------------------------------------------------
    @rule(user=st.sampled_from(USERS), kind=st.sampled_from(["user", "connection", "request"]))
    def open_scope(self, user: str, kind: str) -> None:
        stack = self.stacks[user]
        if len(stack) >= 3:
            return
        top = stack[-1] if stack else None
        cm = getattr(self.sessions, kind)(self._ctx(user))
        if kind == "request" and top is not None and top.conn_key is not None:
            self.contexts[user].run(cm.__enter__)
            key = next(self.serials)
            top.session.active += 1
            stack.append(
                Entry("request", cm, top.session, key, top.conn_key, [("req", key)], request=True)
            )
            return
        # Acquire: replace an expired idle session, evict the least recently used idle one.
        session = self.table.get(user)
        if session is not None and session.active == 0 and self._expired(session):
            self._retire(session)
            self._finish(session)
            self.expired += 1
            session = None
        if session is None and len(self.table) >= MAX_USERS:
            victim = next((s for s in self.table.values() if s.active == 0), None)
            if victim is None:
                before = self.sessions.stats()
                with pytest.raises(us.ScopeLimitError) as info:
                    self.contexts[user].run(cm.__enter__)
                assert (info.value.limit, info.value.user_id) == ("max_users", user)
                after = self.sessions.stats()
                assert (after.users, after.connections, after.requests) == (
                    before.users,
                    before.connections,
                    before.requests,
                )
                return
            self._retire(victim)
            self._finish(victim)
            self.evictions += 1
        if session is None:
            session = ModelSession(user, next(self.serials), self.now, self.now)
            self.table[user] = session
        self.table.move_to_end(user)
        self.contexts[user].run(cm.__enter__)
        session.active += 1
        key = next(self.serials)
        if kind == "user":
            entry = Entry("user", cm, session, None, None)
        elif kind == "connection":
            entry = Entry("connection", cm, session, None, key, [("conn", key)], connection=True)
        else:
            entry = Entry(
                "request", cm, session, key, key, [("conn", key), ("req", key)], True, True
            )
        stack.append(entry)

    @rule(user=st.sampled_from(USERS))
    def resolve(self, user: str) -> None:
        stack = self.stacks[user]
        if not stack:
            return
        top = stack[-1]
        c = self.container
        run = self.contexts[user].run
        assert run(c.context).user_id == user
        self._check(user, "user", ("user", top.session.serial), run(c.user))
        if top.conn_key is None:
            with pytest.raises(us.OutOfScopeError):
                run(c.conn)
        else:
            self._check(user, "conn", ("conn", top.conn_key), run(c.conn))
        if top.req_key is None:
            with pytest.raises(us.OutOfScopeError) as info:
                run(c.pair)
            assert info.value.required_scope is us.Scope.REQUEST
        else:
            self._check(user, "req", ("req", top.req_key), run(c.req))
            pair = run(c.pair)
            assert pair is self.pairs.setdefault(top.req_key, pair)
            assert pair.conn is self.cache[("conn", top.conn_key)]
            assert pair.user is self.cache[("user", top.session.serial)]

    def _check(self, user: str, level: str, key: tuple[str, int], inst: Inst) -> None:
        assert (inst.user, inst.level) == (user, level)
        known = self.cache.get(key)
        if known is not None:
            assert inst is known, f"{key} not cached for its scope"
            return
        assert key not in self.finalized_keys
        assert id(inst) not in self.seen or self.seen[id(inst)] == key
        self.cache[key] = inst
        self.seen[id(inst)] = key
        self.instances.append(inst)

    @rule(user=st.sampled_from(USERS))
    def close_scope(self, user: str) -> None:
        stack = self.stacks[user]
        if not stack:
            return
        entry = stack.pop()
        self.contexts[user].run(entry.cm.__exit__, None, None, None)
        self._finalize(entry.opened)
        session = entry.session
        session.active -= 1
        if session.active == 0:
            session.idle_since = self.now
            if session.retired:
                self._finish(session)

    @rule(user=st.sampled_from(USERS))
    def close_user(self, user: str) -> None:
        self.sessions.close_user(user)
        session = self.table.get(user)
        if session is None:
            return
        self._retire(session)
        if session.active == 0:
            self._finish(session)

    @rule(seconds=st.sampled_from([1.0, 10.0, 40.0, 120.0]))
    def advance_clock(self, seconds: float) -> None:
        self.now += seconds

    @rule()
    def sweep(self) -> None:
        due = [s for s in self.table.values() if s.active == 0 and self._expired(s)]
        assert self.sessions.sweep() == len(due)
        for session in due:
            self._retire(session)
            self._finish(session)
            self.expired += 1

    @rule(user=st.sampled_from(USERS), other=st.sampled_from(USERS))
    def nest_another_user(self, user: str, other: str) -> None:
        if not self.stacks[user] or other == user:
            return
        before = self.sessions.stats()
        cm = self.sessions.request(self._ctx(other))
        with pytest.raises(us.IsolationError) as info:
            self.contexts[user].run(cm.__enter__)
        assert (info.value.expected_user_id, info.value.actual_user_id) == (
            self.stacks[user][-1].session.user,
            other,
        )
        assert self.sessions.stats() == before

    # -- invariants -----------------------------------------------------------------------
    @invariant()
    def stats_match_the_model(self) -> None:
        stats = self.sessions.stats()
        entries = [e for stack in self.stacks.values() for e in stack]
        assert stats.users == len(self.table)
        assert stats.connections == sum(e.connection for e in entries)
        assert stats.requests == sum(e.request for e in entries)
        assert stats.instances == len(self.cache) + len(self.pairs)
        assert stats.cleanups_run == len(self.finalized_keys)
        assert stats.cleanups_failed == 0
        assert (stats.evictions, stats.expired) == (self.evictions, self.expired)

    @invariant()
    def finalizers_ran_once_for_closed_scopes_only(self) -> None:
        for inst in self.instances:
            key = self.seen[id(inst)]
            assert inst.finalized == (1 if key in self.finalized_keys else 0), inst

    @invariant()
    def no_instance_is_shared_across_users(self) -> None:
        owners: dict[int, str] = {}
        for key, inst in self.cache.items():
            assert owners.setdefault(id(inst), inst.user) == inst.user, key

    def teardown(self) -> None:
        for user, stack in self.stacks.items():
            while stack:
                self.close_scope(user)
        self.sessions.close()
        for session in self.table.values():
            self._finish(session)
        self.table.clear()
        self.finalizers_ran_once_for_closed_scopes_only()
        assert all(inst.finalized == 1 for inst in self.instances)
        stats = self.sessions.stats()
        assert (stats.users, stats.connections, stats.requests, stats.instances) == (0, 0, 0, 0)


ScopeMachine.TestCase.settings = settings(max_examples=50, stateful_step_count=30, deadline=None)
TestScopeMachine = ScopeMachine.TestCase
