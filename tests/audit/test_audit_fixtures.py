"""The audit against a realistic legacy backend and a clean modern app."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from userscope.audit import AuditConfig, Finding, load_config, scan_paths

# (file, line, code) of every finding in tests/audit/legacy_backend.
LEGACY_EXPECTED = {
    ("agent_state.py", 19, "US001"),  # shared_state = SharedAgentState()
    ("agent_state.py", 24, "US002"),  # if _holder.current is None: _holder.current = ...
    ("agent_state.py", 35, "US002"),  # module-level if _loop_manager is None:
    ("agent_state.py", 36, "US001"),  # _loop_manager = EventLoopManager()
    ("agent_state.py", 38, "US006"),  # _user_sessions[session_id] = data
    ("connection_pool.py", 9, "US003"),  # _instance + __new__
    ("container.py", 44, "US005"),  # Singleton(UserAgentState) takes user_id
    ("container.py", 45, "US005"),  # ThreadLocalSingleton(ConversationMemory) takes context
    ("container.py", 46, "US005"),  # ThreadSafeSingleton(AgentWebSocketBridge): name pattern
    ("container.py", 47, "US005"),  # Resource(init_user_session) takes user_id
    ("factories.py", 20, "US004"),  # @lru_cache(maxsize=None) get_agent_factory()
    # factories.py:25 @functools.cache load_prompt_templates() returns a constant table: exempt
    ("handlers.py", 10, "US006"),  # _request_counts[user_id] = ...
    ("handlers.py", 14, "US007"),  # get_agent_websocket_bridge() (bare name in config)
    ("handlers.py", 21, "US007"),  # reg.get_registry() (dotted name in config)
    ("registry.py", 24, "US001"),  # global_registry = AgentRegistry()
    ("registry.py", 38, "US001"),  # event_hub = EventHub() via extend-patterns
    ("service_locator.py", 8, "US003"),  # SingletonMeta caches _instances
    ("service_locator.py", 17, "US003"),  # metaclass=SingletonMeta
    ("service_locator.py", 28, "US001"),  # locator = ServiceLocator()
    ("thread_runs.py", 9, "US003"),  # get_instance() classmethod
    ("thread_runs.py", 22, "US006"),  # _active_runs.setdefault(user_id, ...)
    ("thread_runs.py", 23, "US006"),  # _run_events[ctx.thread_id].append(...)
    ("thread_runs.py", 24, "US006"),  # _finished_run_ids.add(run_id): run_id is an identity key
    ("websocket_bridge.py", 21, "US002"),  # global _bridge; _bridge = AgentWebSocketBridge()
}


def _located(root: Path, findings: Iterable[Finding]) -> set[tuple[str, int, str]]:
    return {(Path(f.path).resolve().relative_to(root).as_posix(), f.line, f.code) for f in findings}


def test_legacy_backend_every_finding_by_code_and_line(legacy_backend: Path) -> None:
    config = load_config(start=legacy_backend)
    result = scan_paths([legacy_backend], config)
    assert _located(legacy_backend, result.findings) == LEGACY_EXPECTED
    assert result.ignored_inline == 1  # handlers.py: debug_bridge() ignore[US007]
    assert result.files_scanned == 9  # generated/ is excluded by the fixture's pyproject


def test_legacy_backend_covers_every_rule_except_unparsable() -> None:
    assert {code for _, _, code in LEGACY_EXPECTED} == {f"US00{n}" for n in range(1, 8)}
    # US008 (class-level per-user maps) is covered by tests/audit/agent_backend


def test_legacy_backend_without_its_config_misses_the_configured_findings(
    legacy_backend: Path,
) -> None:
    result = scan_paths([legacy_backend], AuditConfig(exclude=("generated",)))
    located = _located(legacy_backend, result.findings)
    assert located == {
        item
        for item in LEGACY_EXPECTED
        if item[2] != "US007" and item != ("registry.py", 38, "US001")
    }


def test_legacy_findings_carry_symbols_and_messages(legacy_backend: Path) -> None:
    result = scan_paths([legacy_backend / "container.py"], load_config(start=legacy_backend))
    assert [(f.symbol, f.col) for f in result.findings] == [
        ("Container.user_state", 18),
        ("Container.memory", 14),
        ("Container.bridge", 14),
        ("Container.user_session", 20),
    ]
    assert "`user_id`" in result.findings[0].message
    assert "UserScoped" in result.findings[0].hint


def test_modern_app_has_zero_findings(modern_app: Path) -> None:
    result = scan_paths([modern_app], AuditConfig())
    assert result.findings == ()
    assert result.files_scanned == 5
    assert result.lines_scanned > 150
