"""Audit v2: objects judged by what their class body keeps, ranked and advised."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from userscope.audit import AuditConfig, Finding, scan_paths, scan_source

HERE = Path(__file__).resolve().parent
BACKEND = HERE / "agent_backend"


def judged(source: str, config: AuditConfig | None = None) -> list[tuple[str, int, str]]:
    return [
        (f.code, f.line, f.severity)
        for f in scan_source(textwrap.dedent(source), path="mod.py", config=config)
    ]


@pytest.fixture
def backend(monkeypatch: pytest.MonkeyPatch) -> list[Finding]:
    monkeypatch.chdir(BACKEND)
    return list(scan_paths(["agent_backend"]).findings)


# -- the agent_backend fixture: every finding, severity and advice ---------------------------

BACKEND_EXPECTED = {
    ("agent_backend/app.py", 7, "US001", "error"),  # pool: _user_connections[connection_id]
    ("agent_backend/app.py", 8, "US001", "error"),  # notifications: _subscribers[user_id]
    ("agent_backend/app.py", 9, "US001", "error"),  # monitor: _runs[run_id]
    ("agent_backend/app.py", 10, "US001", "warning"),  # jobs: stateful, no identity
    ("agent_backend/infra.py", 9, "US002", "note"),  # get_engine(): create_engine
    ("agent_backend/infra.py", 32, "US001", "note"),  # breaker = CircuitBreaker()
    ("agent_backend/infra.py", 33, "US001", "note"),  # metrics = MetricsCollector()
    ("agent_backend/managers.py", 12, "US003", "error"),  # cls._global_manager
    ("agent_backend/managers.py", 13, "US008", "error"),  # cls._managers[user_id]
    ("agent_backend/security.py", 16, "US001", "error"),  # security_context: _user, _tenant
}


def test_backend_fixture_every_finding_with_its_severity(backend: list[Finding]) -> None:
    assert {(f.path, f.line, f.code, f.severity) for f in backend} == BACKEND_EXPECTED


def test_false_positive_shapes_produce_nothing(backend: list[Finding]) -> None:
    assert [f for f in backend if f.path.endswith("false_positives.py")] == []


def _at(findings: list[Finding], path: str, line: int) -> Finding:
    [finding] = [f for f in findings if f.path == f"agent_backend/{path}" and f.line == line]
    return finding


def test_class_imported_from_another_module_is_judged_by_its_body(
    backend: list[Finding],
) -> None:
    pool = _at(backend, "app.py", 7)
    assert "`WebSocketConnectionPool`" in pool.message
    assert "`_user_connections[connection_id]` in `WebSocketConnectionPool.add`" in pool.message
    assert "`pool = ConnectionScoped(WebSocketConnectionPool)`" in pool.hint
    notifications = _at(backend, "app.py", 8)  # relative import, name says nothing
    assert "`_subscribers.setdefault(user_id)` in `NotificationService.subscribe`" in (
        notifications.message
    )
    assert "`notifications = UserScoped(NotificationService)`" in notifications.hint
    monitor = _at(backend, "app.py", 9)
    assert "`_runs[run_id]` in `ExecutionMonitor.started`" in monitor.message
    assert "`monitor = RequestScoped(ExecutionMonitor)`" in monitor.hint


def test_object_holding_the_authenticated_user_is_an_error(backend: list[Finding]) -> None:
    context = _at(backend, "security.py", 16)
    assert "`self._user` in `SecurityContext.authenticate`" in context.message
    assert "`security_context = UserScoped(SecurityContext)`" in context.hint


def test_class_level_map_keyed_by_identity_is_us008(backend: list[Finding]) -> None:
    managers = _at(backend, "managers.py", 13)
    assert managers.code == "US008"
    assert managers.symbol == "UserManagerFactory._managers"
    assert "keyed by `user_id`" in managers.message
    assert "`UserScoped(...)`" in managers.hint


def test_classmethod_held_singleton_is_judged_by_the_object_it_caches(
    backend: list[Finding],
) -> None:
    factory = _at(backend, "managers.py", 12)
    assert "`cls._global_manager` cached by `get_global_manager()`" in factory.message
    assert "`_history.setdefault(thread_id)` in `UserManager.remember`" in factory.message
    assert "`UserScoped(UserManager)`" in factory.hint


def test_infrastructure_is_a_note_that_says_keep_it_process_wide(
    backend: list[Finding],
) -> None:
    for line in (32, 33):
        finding = _at(backend, "infra.py", line)
        assert finding.severity == "note"
        assert finding.hint.endswith("process-wide; make sure it holds no per-user data")
    assert _at(backend, "infra.py", 9).hint == (
        "keep `engine` process-wide; make sure it holds no per-user data"
    )


def test_stateful_object_without_identity_is_a_warning_with_both_options(
    backend: list[Finding],
) -> None:
    jobs = _at(backend, "app.py", 10)
    assert "`_jobs.append()` in `JobQueueManager.push`" in jobs.message
    assert "`jobs = UserScoped(JobQueueManager)`" in jobs.hint
    assert "if it is shared by design, keep it process-wide" in jobs.hint


# -- class bodies decide, not names ----------------------------------------------------------


def test_name_is_not_enough_when_the_class_body_is_in_the_tree() -> None:
    source = """\
    class AgentRegistry:
        def describe(self):
            return "stateless"


    registry = AgentRegistry()
    """
    assert judged(source) == []


def test_unremarkable_name_with_identity_keyed_body_is_an_error() -> None:
    source = """\
    class Supervisor:
        def __init__(self):
            self.tasks = {}

        def track(self, execution_id, task):
            self.tasks[execution_id] = task


    supervisor = Supervisor()
    """
    assert judged(source) == [("US001", 9, "error")]


def test_evidence_is_inherited_from_base_classes_in_the_tree() -> None:
    source = """\
    class Base:
        def bind(self, tenant_id, value):
            self._by_tenant[tenant_id] = value


    class Handler(Base):
        pass


    handler = Handler()
    """
    assert judged(source) == [("US001", 10, "error")]


def test_implementation_chosen_at_run_time_is_judged_by_the_tree_implementations() -> None:
    source = """\
    from abc import ABC, abstractmethod


    class ConversationManager(ABC):
        @abstractmethod
        def join(self, sid): ...


    class StandaloneConversationManager(ConversationManager):
        def join(self, sid):
            self._active[sid] = object()


    ConversationManagerImpl = get_impl(ConversationManager, "x")
    conversation_manager = ConversationManagerImpl.get_instance()
    """
    [finding] = scan_source(textwrap.dedent(source))
    assert (finding.code, finding.line, finding.severity) == ("US001", 15, "error")
    assert "`_active[sid]` in `StandaloneConversationManager.join`" in finding.message
    assert "ConnectionScoped" in finding.hint


def test_identity_attribute_set_only_in_init_is_not_evidence() -> None:
    source = """\
    class Runner:
        def __init__(self, user_id):
            self.user_id = user_id


    runner = Runner("admin")
    """
    assert judged(source) == []


def test_client_session_attribute_is_not_an_identity() -> None:
    source = """\
    class ApiManager:
        def connect(self):
            self._session = aiohttp.ClientSession()


    api = ApiManager()
    """
    assert judged(source) == [("US001", 6, "warning")]


@pytest.mark.parametrize(
    ("key", "scope"),
    [
        ("user_id", "UserScoped"),
        ("thread_id", "UserScoped"),
        ("tenant_id", "UserScoped"),
        ("session_id", "UserScoped"),
        ("connection_id", "ConnectionScoped"),
        ("run_id", "RequestScoped"),
        ("execution_id", "RequestScoped"),
        ("request_id", "RequestScoped"),
    ],
)
def test_default_identity_keys_and_the_scope_they_suggest(key: str, scope: str) -> None:
    source = f"""\
    class Tracker:
        def put(self, {key}, value):
            self._items[{key}] = value


    tracker = Tracker()
    """
    [finding] = scan_source(textwrap.dedent(source))
    assert finding.severity == "error"
    assert f"`tracker = {scope}(Tracker)`" in finding.hint


def test_identity_keys_are_configurable() -> None:
    source = """\
    class Tracker:
        def put(self, account_ref, value):
            self._items[account_ref] = value


    tracker = Tracker()
    """
    assert judged(source) == [("US001", 6, "warning")]
    config = AuditConfig.from_mapping({"extend-identity-keys": ["account_ref"]})
    assert judged(source, config) == [("US001", 6, "error")]
    config = AuditConfig.from_mapping({"identity-keys": ["account_ref"]})
    assert "account_ref" in config.user_names
    assert not config.is_user_name("user_id")


def test_identity_attributes_and_infrastructure_patterns_are_configurable() -> None:
    source = """\
    class Gate:
        def login(self, who):
            self._caller = who


    gate = Gate()
    """
    assert judged(source) == []
    config = AuditConfig.from_mapping({"extend-identity-attributes": ["caller"]})
    assert judged(source, config) == [("US001", 6, "error")]
    infra = (
        "class ThingPool:\n    def add(self, x):\n        self._xs.append(x)\n\np = ThingPool()\n"
    )
    assert judged(infra) == [("US001", 5, "note")]
    config = AuditConfig.from_mapping({"infrastructure-patterns": ["Engine"]})
    assert judged(infra, config) == [("US001", 5, "warning")]


# -- class-level state and classmethod singletons --------------------------------------------


def test_class_level_map_through_the_class_name_or_self() -> None:
    source = """\
    class Registry:
        _sessions = {}
        _runs = {}

        def open(self, session_id, data):
            Registry._sessions[session_id] = data

        def start(self, run_id):
            self._runs[run_id] = True
    """
    assert judged(source) == [("US008", 2, "error"), ("US008", 3, "error")]


def test_class_level_map_not_keyed_by_identity_is_not_us008() -> None:
    source = """\
    class Plugins:
        _registry = {}

        @classmethod
        def register(cls, name, plugin):
            cls._registry[name] = plugin
    """
    assert judged(source) == []


# -- exemptions: settings, loggers, regexes, imports, tables, stubs, setters -------------------


@pytest.mark.parametrize(
    "body",
    [
        "_x = Settings()",
        "_x = AppConfig.from_env()",
        "_x = load_settings()",
        "_x = logging.getLogger('a')",
        "_x = structlog.get_logger()",
        "_x = re.compile('a+')",
        "import numpy as _x",
        "_x = importlib.import_module('numpy')",
        "_x = {KeyError: 'missing', ValueError: 'bad'}",
        "_x = f'{a}-{b}'",
        "_x = str(value)",
        "_x = time.monotonic()",
        "_x = frozenset(items)",
        "_x = (1, 2)",
        "_x = os.environ.get('A')",
    ],
)
def test_accessor_exemptions(body: str) -> None:
    source = f"def get():\n    global _x\n    {body}\n    return _x\n"
    assert judged(source) == []


def test_accessor_rule_respects_settings_exemption_through_a_factory_of_the_module() -> None:
    source = """\
    def _load():
        return {"a": 1}


    def get_table():
        global _table
        if _table is None:
            _table = _load()
        return _table
    """
    assert judged(source) == []


def test_setters_and_resetters_are_not_accessors_and_a_global_is_reported_once() -> None:
    source = """\
    _bridge = None


    def set_bridge(bridge):
        global _bridge
        _bridge = bridge


    def get_bridge():
        global _bridge
        if _bridge is None:
            _bridge = AgentBridge()
        return _bridge


    def get_bridge_again():
        global _bridge
        _bridge = AgentBridge()
        return _bridge


    def reset_bridge():
        global _bridge
        _bridge = None
    """
    assert judged(source) == [("US002", 9, "warning")]


def test_accessor_of_an_identity_holding_class_is_an_error() -> None:
    source = """\
    class SessionRouter:
        def route(self, session_id, ws):
            self._sockets[session_id] = ws


    _router = None


    def get_router():
        global _router
        if _router is None:
            _router = SessionRouter()
        return _router
    """
    [finding] = scan_source(textwrap.dedent(source))
    assert (finding.code, finding.severity) == ("US002", "error")
    assert "`router = UserScoped(SessionRouter)`" in finding.hint


def test_cached_factory_is_judged_by_what_it_returns() -> None:
    source = """\
    from functools import lru_cache


    class Engine:
        pass


    @lru_cache
    def get_pattern() -> re.Pattern[str]:
        return re.compile("a")


    @lru_cache
    def get_logger():
        return logging.getLogger("x")


    @lru_cache
    def get_client():
        return httpx.Client()


    @lru_cache
    def get_registry():
        return AgentRegistry()
    """
    assert judged(source) == [("US004", 19, "note"), ("US004", 24, "warning")]


# -- module-level maps written from other modules --------------------------------------------


def test_module_level_map_keyed_from_another_module(tmp_path: Path) -> None:
    package = tmp_path / "app"
    (package / "utils").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "utils" / "__init__.py").write_text("")
    (package / "utils" / "state.py").write_text("query_cache = {}\nother = {}\n")
    (package / "search.py").write_text(
        "from app.utils import state\n\n\n"
        "def search(user, q):\n"
        "    state.query_cache[user.uuid] = q\n"
        "    state.other['k'] = q\n"
    )
    result = scan_paths([package])
    [finding] = result.findings
    assert (Path(finding.path).name, finding.line, finding.code) == ("state.py", 1, "US006")
    assert finding.severity == "error"
    assert "`search()`" in finding.message
    assert "search.py" in finding.message


# -- ordering and severities on findings -----------------------------------------------------


def test_findings_carry_severity_and_rank() -> None:
    error = Finding("a.py", 1, 1, "US006", "m")
    assert (error.severity, error.rank) == ("error", 0)
    note = Finding("a.py", 1, 1, "US001", "m", severity="note")
    assert note.rank == 2
    with pytest.raises(ValueError, match="severity must be one of"):
        Finding("a.py", 1, 1, "US001", "m", severity="critical")


def test_state_changed_only_by_private_methods_is_bookkeeping() -> None:
    source = """\
    class CallSiteRegistry:
        def _record(self, name, site):
            self._counts[name, site] = self._counts.get((name, site), 0) + 1


    _DEFAULT = CallSiteRegistry()
    """
    assert judged(source) == []
    public = source.replace("def _record", "def record")
    assert judged(public) == [("US001", 6, "warning")]


def test_userscope_does_not_flag_itself() -> None:
    source_root = Path(__file__).resolve().parents[2] / "src" / "userscope"
    assert scan_paths([source_root]).findings == ()


@pytest.mark.parametrize(
    ("key", "scope"),
    [("connection_id", "ConnectionScoped"), ("run_id", "RequestScoped"), ("user_id", "UserScoped")],
)
def test_module_level_map_names_its_key_and_the_scope(key: str, scope: str) -> None:
    source = f"_items = {{}}\n\n\ndef put({key}, value):\n    _items[{key}] = value\n"
    [finding] = scan_source(source)
    assert finding.code == "US006"
    assert f"keyed by `{key}`" in finding.message
    assert f"`{scope}(...)`" in finding.hint
