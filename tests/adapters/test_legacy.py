"""Legacy accessor shims: scoped path, warn/error modes, call-site report, threads, async."""

from __future__ import annotations

import gc
import inspect
import pickle
import sys
import threading
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from dependency_injector import containers, providers

import userscope as us
from userscope.adapters import legacy
from userscope.adapters.legacy import LegacyAccessError, LegacyAccessWarning


class Bridge:
    def __init__(self, context: us.UserExecutionContext | None = None) -> None:
        self.user_id = None if context is None else context.user_id
        self.events: list[str] = []


OLD_BRIDGE = Bridge()


def ours(caught: pytest.WarningsRecorder) -> list[warnings.WarningMessage]:
    """The legacy warnings a block emitted (a garbage collection inside it may add others,
    e.g. a ResourceWarning for an object another test left behind)."""
    return [w for w in caught if issubclass(w.category, LegacyAccessWarning)]


def old_get_bridge() -> Bridge:
    return OLD_BRIDGE


async def open_client(context: us.UserExecutionContext) -> Bridge:
    return Bridge(context)


class Container(containers.DeclarativeContainer):
    context = us.CurrentContext()
    bridge = us.UserScoped(Bridge, context)
    scratch = us.RequestScoped(Bridge, context)
    client = us.UserScoped(open_client, context)


def here() -> int:
    """Line number of the caller (to locate the line just above)."""
    return sys._getframe(1).f_lineno


@pytest.fixture
def registry() -> legacy.LegacyRegistry:
    return legacy.LegacyRegistry()


@pytest.fixture
def sessions() -> Iterator[us.UserSessions]:
    runtime = us.UserSessions()
    yield runtime
    runtime.close()


def ctx(user_id: str) -> us.UserExecutionContext:
    return us.UserExecutionContext(user_id=user_id, thread_id=f"t-{user_id}")


def make(registry: legacy.LegacyRegistry, mode: str = "warn") -> legacy.LegacyAccessor[Bridge]:
    return legacy.accessor(
        Container.bridge,
        name="get_agent_websocket_bridge",
        fallback=old_get_bridge,
        mode=mode,
        registry=registry,
    )


# -- scoped path ------------------------------------------------------------------------


def test_inside_a_scope_it_returns_the_scoped_instance(
    registry: legacy.LegacyRegistry, sessions: us.UserSessions
) -> None:
    get_bridge = make(registry)
    with sessions.request(ctx("alice")):
        alice = get_bridge()
        assert alice is Container.bridge()
        assert get_bridge() is alice
    with sessions.request(ctx("bob")):
        bob = get_bridge()
    assert (alice.user_id, bob.user_id) == ("alice", "bob")
    assert alice is not OLD_BRIDGE
    entry = registry.report().accessor("get_agent_websocket_bridge")
    assert (entry.scoped, entry.fallback, entry.refused) == (3, 0, 0)
    assert entry.ready_for_error
    assert entry.next_step == "every call was scoped: flip to mode='error'"


def test_a_narrower_provider_needs_its_own_level(
    registry: legacy.LegacyRegistry, sessions: us.UserSessions
) -> None:
    get_scratch = legacy.accessor(
        Container.scratch, name="get_scratch", mode="error", registry=registry
    )
    with sessions.user(ctx("alice")):
        with pytest.raises(LegacyAccessError) as info:
            get_scratch()
        assert info.value.required_scope is us.Scope.REQUEST
        assert info.value.active_scope is us.Scope.USER
        with sessions.request(ctx("alice")):
            assert get_scratch().user_id == "alice"


def test_overrides_win_inside_and_outside_scopes(
    registry: legacy.LegacyRegistry, sessions: us.UserSessions
) -> None:
    get_bridge = make(registry)
    fake = Bridge()
    with Container.bridge.override(providers.Object(fake)):
        assert get_bridge() is fake  # no warning: the override is what tests asked for
        with sessions.request(ctx("alice")):
            assert get_bridge() is fake
    assert registry.report().accessor(get_bridge.name).scoped == 2


def test_current_context_can_back_an_accessor(
    registry: legacy.LegacyRegistry, sessions: us.UserSessions
) -> None:
    get_ctx = legacy.accessor(
        Container.context, name="get_current_user", mode="error", registry=registry
    )
    with sessions.request(ctx("carol")):
        assert get_ctx().user_id == "carol"


# -- warn mode ----------------------------------------------------------------------------


def test_warn_mode_outside_a_scope_warns_at_the_caller_and_falls_back(
    registry: legacy.LegacyRegistry,
) -> None:
    get_bridge = make(registry)
    with pytest.warns(LegacyAccessWarning) as caught:
        value, line = get_bridge(), here()
    assert value is OLD_BRIDGE
    [record] = ours(caught)
    assert record.filename == __file__
    assert record.lineno == line
    warning = record.message
    assert isinstance(warning, LegacyAccessWarning)
    assert isinstance(warning, DeprecationWarning)
    assert warning.accessor == "get_agent_websocket_bridge"
    assert warning.provider == "Container.bridge"
    assert warning.required_scope is us.Scope.USER
    assert (warning.filename, warning.lineno) == (__file__, line)
    assert (
        warning.function
        == test_warn_mode_outside_a_scope_warns_at_the_caller_and_falls_back.__qualname__
    )
    assert "inject Container.bridge" in str(warning)
    [site] = registry.report().sites
    assert (site.filename, site.lineno, site.function) == (__file__, line, warning.function)
    assert (site.scoped, site.fallback, site.refused) == (0, 1, 0)


def test_warning_points_at_the_caller_of_a_nested_function(
    registry: legacy.LegacyRegistry,
) -> None:
    get_bridge = make(registry)

    def legacy_handler() -> tuple[Bridge, int]:
        return get_bridge(), here()

    with pytest.warns(LegacyAccessWarning) as caught:
        value, line = legacy_handler()
    assert value is OLD_BRIDGE
    [record] = ours(caught)
    assert (record.filename, record.lineno) == (__file__, line)
    assert registry.report().sites[0].function.endswith("<locals>.legacy_handler")


def test_default_filter_shows_a_site_once_but_the_report_counts_every_call(
    registry: legacy.LegacyRegistry,
) -> None:
    get_bridge = make(registry)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default", LegacyAccessWarning)
        for _ in range(3):
            get_bridge()
    assert len(caught) == 1
    assert registry.report().sites[0].fallback == 3


def test_warnings_as_errors_still_records_the_site(registry: legacy.LegacyRegistry) -> None:
    get_bridge = make(registry)
    with warnings.catch_warnings():
        warnings.simplefilter("error", LegacyAccessWarning)
        with pytest.raises(LegacyAccessWarning):
            get_bridge()
    assert registry.report().sites[0].fallback == 1


# -- error mode ---------------------------------------------------------------------------


def test_error_mode_outside_a_scope_raises_out_of_scope_with_a_migration_hint(
    registry: legacy.LegacyRegistry,
) -> None:
    get_bridge = make(registry, mode="error")
    with pytest.raises(us.OutOfScopeError) as info:
        get_bridge()
    line = here() - 1
    err = info.value
    assert isinstance(err, LegacyAccessError)
    assert err.provider == "Container.bridge"
    assert err.required_scope is us.Scope.USER
    assert err.active_scope is None
    assert err.accessor == "get_agent_websocket_bridge"
    assert (err.filename, err.lineno) == (__file__, line)
    assert (
        err.function
        == test_error_mode_outside_a_scope_raises_out_of_scope_with_a_migration_hint.__qualname__
    )
    assert err.hint is not None
    assert "get_agent_websocket_bridge() is in 'error' mode" in err.hint
    assert f"{__file__}:{line}" in err.hint
    assert "inject Container.bridge" in err.hint
    assert err.hint in str(err)
    [site] = registry.report().sites
    assert (site.lineno, site.scoped, site.fallback, site.refused) == (line, 0, 0, 1)


def test_error_mode_needs_no_fallback(registry: legacy.LegacyRegistry) -> None:
    get_bridge = legacy.accessor(
        Container.bridge, name="get_bridge", mode="error", registry=registry
    )
    assert get_bridge.fallback is None
    with pytest.raises(LegacyAccessError):
        get_bridge()


def test_warning_and_error_survive_pickling() -> None:
    err = LegacyAccessError("get_x", "C.x", us.Scope.REQUEST, us.Scope.USER, "a.py", 3, "f")
    copy = pickle.loads(pickle.dumps(err))
    assert (copy.accessor, copy.lineno, copy.active_scope, str(copy)) == (
        "get_x",
        3,
        us.Scope.USER,
        str(err),
    )
    warning = LegacyAccessWarning("get_x", "C.x", us.Scope.USER, "a.py", 3, "f")
    assert str(pickle.loads(pickle.dumps(warning))) == str(warning)


# -- report -------------------------------------------------------------------------------


def scoped_call_site(get_bridge: legacy.LegacyAccessor[Bridge]) -> tuple[Bridge, int]:
    return get_bridge(), here()


def fallback_call_site(get_bridge: legacy.LegacyAccessor[Bridge]) -> tuple[Bridge, int]:
    return get_bridge(), here()


def test_report_counts_each_call_site(
    registry: legacy.LegacyRegistry, sessions: us.UserSessions
) -> None:
    get_bridge = make(registry)
    other = legacy.accessor(Container.scratch, name="get_scratch", mode="error", registry=registry)
    for user in ("alice", "bob", "alice"):
        with sessions.request(ctx(user)):
            _, scoped_line = scoped_call_site(get_bridge)

    def outside_then_inside() -> tuple[int, int]:
        for _ in range(2):
            _, outside = fallback_call_site(get_bridge)
        with sessions.request(ctx("alice")):
            _, inside = fallback_call_site(get_bridge)  # same line, now scoped
        return outside, inside

    with pytest.warns(LegacyAccessWarning):
        fallback_line, mixed_line = outside_then_inside()

    report = registry.report()
    assert [entry.name for entry in report.accessors] == [
        "get_agent_websocket_bridge",
        "get_scratch",
    ]
    entry = report.accessor("get_agent_websocket_bridge")
    assert (entry.provider, entry.scope, entry.mode) == ("Container.bridge", "USER", "warn")
    assert mixed_line == fallback_line
    assert [(s.function, s.lineno, s.scoped, s.fallback, s.refused) for s in entry.sites] == sorted(
        [
            ("scoped_call_site", scoped_line, 3, 0, 0),
            ("fallback_call_site", fallback_line, 1, 2, 0),
        ],
        key=lambda row: row[1],
    )
    assert (entry.scoped, entry.fallback, entry.refused) == (4, 2, 0)
    assert {s.location for s in entry.sites} == {
        f"{__file__}:{scoped_line}",
        f"{__file__}:{fallback_line}",
    }
    assert not entry.ready_for_error
    assert (
        entry.next_step
        == "fix 1 call site that fell back: open a scope there or inject Container.bridge"
    )
    assert report.accessor("get_scratch").sites == ()
    assert report.accessor("get_scratch").next_step == "no calls recorded yet"
    with pytest.raises(KeyError, match="known: get_agent_websocket_bridge, get_scratch"):
        report.accessor("get_nothing")

    table = registry.format_report(relative_to=__file__.rsplit("/", 1)[0])
    lines = table.splitlines()
    assert lines[0].split() == [
        "accessor",
        "/",
        "call",
        "site",
        "mode",
        "scoped",
        "fallback",
        "refused",
        "next",
        "step",
    ]
    assert lines[1].startswith("get_agent_websocket_bridge -> Container.bridge (USER)  warn")
    assert f"  test_legacy.py:{fallback_line} in fallback_call_site" in table
    assert lines[1].split()[5:8] == ["4", "2", "0"]

    assert other.name == "get_scratch"
    registry.reset()
    assert registry.report().sites == ()
    assert [e.name for e in registry.report().accessors] == [
        "get_agent_websocket_bridge",
        "get_scratch",
    ]


def test_set_mode_flips_every_accessor_all_or_nothing(registry: legacy.LegacyRegistry) -> None:
    with_fallback = make(registry)
    without = legacy.accessor(
        Container.scratch, name="get_scratch", mode="error", registry=registry
    )
    registry.set_mode("error")
    assert (with_fallback.mode, without.mode) == ("error", "error")
    with pytest.raises(ValueError, match="cannot switch get_scratch to 'warn'") as info:
        registry.set_mode("warn")
    assert "get_agent_websocket_bridge" not in str(info.value)
    assert with_fallback.mode == "error"  # nothing changed
    registry.set_mode("warn", names=["get_agent_websocket_bridge"])
    assert (with_fallback.mode, without.mode) == ("warn", "error")
    assert registry.report().accessor("get_agent_websocket_bridge").mode == "warn"
    with pytest.raises(ValueError, match="no legacy accessor named get_nope"):
        registry.set_mode("error", names=["get_nope"])
    with pytest.raises(ValueError, match="invalid legacy accessor mode 'off'"):
        legacy.set_mode("off", registry=registry)
    with_fallback.mode = "error"
    assert registry.report().accessor(with_fallback.name).mode == "error"
    with pytest.raises(ValueError, match="no fallback"):
        without.mode = "warn"


@pytest.fixture
def default_state() -> Iterator[None]:
    """Restore the modes of accessors on the process-wide registry (examples use it)."""
    registry = legacy.default_registry()
    modes = {a: a.mode for a in registry.accessors}
    yield
    for accessor, mode in modes.items():
        accessor.mode = mode


@pytest.mark.usefixtures("default_state")
def test_module_functions_use_the_default_registry(sessions: us.UserSessions) -> None:
    get_bridge = legacy.accessor(Container.bridge, name="test_legacy_default_bridge", mode="error")
    assert get_bridge.registry is legacy.default_registry()
    with sessions.request(ctx("alice")):
        get_bridge()
    assert legacy.report().accessor("test_legacy_default_bridge").scoped == 1
    assert "test_legacy_default_bridge -> Container.bridge (USER)" in legacy.format_report()
    legacy.set_mode("error")
    assert get_bridge.mode == "error"
    legacy.reset()
    assert legacy.report().accessor("test_legacy_default_bridge").sites == ()


# -- threads ------------------------------------------------------------------------------


def test_many_threads_record_every_call_once(
    registry: legacy.LegacyRegistry, sessions: us.UserSessions
) -> None:
    get_bridge = make(registry)
    threads, calls = 16, 50
    start = threading.Barrier(threads)
    seen: dict[int, set[str | None]] = {}
    errors: list[BaseException] = []

    def work(number: int) -> None:
        try:
            start.wait()
            users: set[str | None] = set()
            with sessions.request(ctx(f"user-{number}")):
                for _ in range(calls):
                    users.add(get_bridge().user_id)
            for _ in range(calls):
                assert get_bridge() is OLD_BRIDGE
            seen[number] = users
        except BaseException as exc:  # reported below: a thread cannot fail the test itself
            errors.append(exc)

    def run_all() -> None:
        pool = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()

    with pytest.warns(LegacyAccessWarning) as caught:
        run_all()
    assert errors == []
    assert seen == {n: {f"user-{n}"} for n in range(threads)}
    assert len(caught) == threads * calls
    entry = registry.report().accessor("get_agent_websocket_bridge")
    assert sorted((s.scoped, s.fallback) for s in entry.sites) == [
        (0, threads * calls),
        (threads * calls, 0),
    ]


# -- async ----------------------------------------------------------------------------------


async def old_get_client() -> Bridge:
    return OLD_BRIDGE


async def test_async_accessor_resolves_an_async_provider_in_scope(
    registry: legacy.LegacyRegistry, sessions: us.UserSessions
) -> None:
    get_client = legacy.async_accessor(
        Container.client, name="get_client", fallback=old_get_client, registry=registry
    )
    async with sessions.request(ctx("alice")):
        first = await get_client()
        assert first is await get_client()
        assert first is await Container.client.async_()
    assert first.user_id == "alice"
    assert registry.report().accessor("get_client").scoped == 2


async def test_async_accessor_warns_at_the_caller_and_awaits_an_async_fallback(
    registry: legacy.LegacyRegistry,
) -> None:
    get_client = legacy.async_accessor(
        Container.client, name="get_client", fallback=old_get_client, registry=registry
    )
    with pytest.warns(LegacyAccessWarning) as caught:
        value, line = await get_client(), here()
    assert value is OLD_BRIDGE
    [record] = ours(caught)
    assert (record.filename, record.lineno) == (__file__, line)
    assert registry.report().sites[0].fallback == 1


async def test_async_accessor_accepts_sync_providers_and_fallbacks(
    registry: legacy.LegacyRegistry, sessions: us.UserSessions
) -> None:
    get_bridge = legacy.async_accessor(
        Container.bridge, name="get_bridge", fallback=old_get_bridge, registry=registry
    )
    async with sessions.request(ctx("bob")):
        assert (await get_bridge()).user_id == "bob"
    with pytest.warns(LegacyAccessWarning):
        assert await get_bridge() is OLD_BRIDGE


async def test_async_accessor_in_error_mode_raises_on_await(
    registry: legacy.LegacyRegistry,
) -> None:
    get_client = legacy.async_accessor(
        Container.client, name="get_client", mode="error", registry=registry
    )
    pending = get_client()
    line = here() - 1
    with pytest.raises(LegacyAccessError) as info:
        await pending
    assert (info.value.provider, info.value.lineno) == ("Container.client", line)
    assert registry.report().sites[0].refused == 1


def test_sync_accessor_refuses_async_providers_and_fallbacks(
    registry: legacy.LegacyRegistry,
) -> None:
    with pytest.raises(TypeError, match=r"use legacy\.async_accessor"):
        legacy.accessor(
            Container.client, name="get_client", fallback=old_get_bridge, registry=registry
        )
    with pytest.raises(TypeError, match="coroutine function"):
        legacy.accessor(
            Container.bridge,
            name="get_bridge",
            fallback=old_get_client,  # type: ignore[arg-type]
            registry=registry,
        )


# -- invalid configuration ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"mode": "warn"}, ValueError, "needs fallback=<the old accessor>"),
        (
            {"mode": "strict", "fallback": old_get_bridge},
            ValueError,
            "invalid legacy accessor mode 'strict'",
        ),
        (
            {"mode": None, "fallback": old_get_bridge},
            ValueError,
            "invalid legacy accessor mode None",
        ),
        ({"name": "  ", "mode": "error"}, ValueError, "needs name="),
        ({"fallback": OLD_BRIDGE}, TypeError, "must be the old accessor"),
        ({"mode": "error", "registry": {}}, TypeError, "registry must be a LegacyRegistry"),
    ],
)
def test_invalid_configuration_is_refused(
    kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    arguments: dict[str, Any] = {"name": "get_bridge", **kwargs}
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        legacy.accessor(Container.bridge, **arguments)


def test_a_plain_provider_is_refused() -> None:
    singleton = providers.Singleton(Bridge)
    with pytest.raises(TypeError, match="needs a userscope scoped provider"):
        legacy.accessor(singleton, name="get_bridge", fallback=old_get_bridge)


def test_accessor_looks_like_the_old_function(registry: legacy.LegacyRegistry) -> None:
    get_bridge = make(registry)
    assert get_bridge.__name__ == "get_agent_websocket_bridge"
    assert repr(get_bridge) == (
        "<LegacyAccessor get_agent_websocket_bridge -> Container.bridge (USER) mode='warn'>"
    )
    assert get_bridge.provider is Container.bridge
    assert registry.accessors == (get_bridge,)


# -- public surface --------------------------------------------------------------------------


def test_all_is_sorted_and_every_public_name_documented_with_an_example() -> None:
    assert list(legacy.__all__) == sorted(legacy.__all__)
    public = {n for n in dir(legacy) if n[0] not in "_@"} - {"annotations", "os"}
    assert public == set(legacy.__all__)
    for name in legacy.__all__:
        if name == "LegacyMode":  # a Literal alias: documented in the module, no __doc__
            continue
        doc = inspect.getdoc(getattr(legacy, name)) or ""
        assert ">>>" in doc, name


def test_report_forgets_collected_accessors_once_their_counts_are_reset(
    registry: legacy.LegacyRegistry,
) -> None:
    kept = make(registry)
    dropped = legacy.accessor(
        Container.scratch, name="get_scratch", mode="error", registry=registry
    )
    with pytest.raises(LegacyAccessError):
        dropped()
    del dropped
    gc.collect()
    assert [a.name for a in registry.report().accessors] == [kept.name, "get_scratch"]
    registry.reset()
    assert [a.name for a in registry.report().accessors] == [kept.name]
