"""Each rule on small sources: what it finds, what it leaves alone."""

from __future__ import annotations

import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from userscope.audit import RULES, AuditConfig, Finding, scan_source


def found(source: str, config: AuditConfig | None = None) -> list[tuple[str, int]]:
    return [(f.code, f.line) for f in scan_source(textwrap.dedent(source), config=config)]


# -- US001 module-level stateful instances ---------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        "registry = AgentRegistry()",
        "pool: ConnectionPool = redis.ConnectionPool(max_connections=10)",
        "a = b = SessionManager()",
        "Logger.manager = Manager(Logger.root)",
        "if True:\n    cache = TTLCache(maxsize=10)",
        "try:\n    store = RedisStore()\nexcept ImportError:\n    store = None",
    ],
)
def test_us001_module_level_stateful_instance(source: str) -> None:
    assert [code for code, _ in found(source)] == ["US001"]


@pytest.mark.parametrize(
    "source",
    [
        "app = FastAPI()",
        "router = APIRouter(prefix='/x')",
        "logger = logging.getLogger(__name__)",
        "settings = Settings()",
        "T = TypeVar('T')",
        "registry_cls = AgentRegistry",
        "registry = AgentRegistry.from_env()",
        "session_local = sessionmaker(bind=engine)",
        "config = StateConfig()",
        "def f():\n    registry = AgentRegistry()\n    return registry",
        "class C:\n    registry = AgentRegistry()",
        "if __name__ == '__main__':\n    agent = ChatAgent()\n    agent.run()",
    ],
)
def test_us001_leaves_stateless_and_non_module_objects_alone(source: str) -> None:
    assert found(source) == []


def test_us001_patterns_are_configurable_suffixes_or_globs() -> None:
    source = "hub = EventHub()\nbus = MessageBusImpl()\nregistry = AgentRegistry()\n"
    config = AuditConfig(patterns=("Hub", "*Bus*"))
    assert found(source, config) == [("US001", 1), ("US001", 2)]
    assert found(source, AuditConfig.from_mapping({"extend-patterns": ["Hub"]})) == [
        ("US001", 1),
        ("US001", 3),
    ]


# -- US002 lazy global accessors --------------------------------------------------------


def test_us002_global_assignment_inside_function() -> None:
    source = """\
    _bridge = None

    def get_bridge():
        global _bridge
        if _bridge is None:
            _bridge = Bridge()
        return _bridge
    """
    [finding] = scan_source(textwrap.dedent(source))
    assert (finding.code, finding.line, finding.symbol) == ("US002", 3, "get_bridge")
    assert "`_bridge`" in finding.message


def test_us002_module_level_if_is_none() -> None:
    source = "_client = None\nif _client is None:\n    _client = make_client()\n"
    assert found(source) == [("US002", 2)]


def test_us002_attribute_on_module_holder() -> None:
    source = """\
    class _State:
        bridge = None

    def get_bridge():
        if _State.bridge is None:
            _State.bridge = make_bridge()
        return _State.bridge
    """
    assert found(source) == [("US002", 5)]


@pytest.mark.parametrize(
    "source",
    [
        # resets and counters are not lazy creation
        "_x = 1\ndef reset():\n    global _x\n    _x = None\n",
        "_x = {}\ndef reset():\n    global _x\n    _x = {}\n",
        "_x = []\ndef reset():\n    global _x\n    _x = list()\n",
        "_n = 0\ndef bump():\n    global _n\n    _n += 1\n",
        # global declared but only read
        "_x = 1\ndef read():\n    global _x\n    return _x\n",
        # attribute on self / a parameter / a local
        "def f(holder):\n    if holder.x is None:\n        holder.x = 1\n",
        "class C:\n    def f(self):\n        if self.x is None:\n            self.x = 1\n",
        "def f():\n    h = make()\n    if h.x is None:\n        h.x = 1\n",
    ],
)
def test_us002_negatives(source: str) -> None:
    assert found(source) == []


# -- US003 class-level singletons ------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "evidence"),
    [
        (
            """\
            class Pool:
                _instance = None
                def __new__(cls):
                    if cls._instance is None:
                        cls._instance = super().__new__(cls)
                    return cls._instance
            """,
            "`_instance` + `__new__`",
        ),
        (
            """\
            class Pool:
                def __new__(cls):
                    if not hasattr(cls, "_the_instance"):
                        cls._the_instance = super().__new__(cls)
                    return cls._the_instance
            """,
            "`_the_instance` + `__new__`",
        ),
        (
            """\
            class Runs:
                _runs = None
                @classmethod
                def instance(cls):
                    if cls._runs is None:
                        cls._runs = cls()
                    return cls._runs
            """,
            "`instance()` class accessor",
        ),
        (
            """\
            class ManagerFactory:
                @classmethod
                def get_global_manager(cls):
                    if getattr(cls, "_global_manager", None) is None:
                        cls._global_manager = UserManager()
                    return cls._global_manager
            """,
            "`cls._global_manager` cached by `get_global_manager()`",
        ),
        ("class Locator(metaclass=SingletonMeta):\n    pass\n", "metaclass `SingletonMeta`"),
        ("@singleton\nclass Locator:\n    pass\n", "`@singleton` decorator"),
    ],
)
def test_us003_class_level_singleton(source: str, evidence: str) -> None:
    [finding] = scan_source(textwrap.dedent(source))
    assert finding.code == "US003"
    assert evidence in finding.message


@pytest.mark.parametrize(
    "source",
    [
        # Enum-style __new__ without an instance cache
        (
            "class P(int, Enum):\n    def __new__(cls, v):\n        o = int.__new__(cls, v)\n"
            "        o._value_ = v\n        return o\n"
        ),
        # __new__ of a metaclass that merely overrides __instancecheck__
        (
            "class Meta(type):\n    def __new__(mcs, *a):\n        mcs.__instancecheck__\n"
            "        return super().__new__(mcs, *a)\n"
        ),
        # a factory classmethod named like an instance attribute, called from __new__
        (
            "class Zone:\n    @classmethod\n    def _new_instance(cls, key):\n        return key\n"
            "    def __new__(cls, key):\n        return cls._new_instance(key)\n"
        ),
        # an instance method called instance() is not a class accessor
        "class C:\n    def instance(self):\n        return self\n",
        # a classmethod that builds a new object on every call is a factory
        (
            "class Runs:\n    @classmethod\n    def get_instance(cls, user):\n"
            "        return cls(user)\n"
        ),
        # an instance method recording an id on the class is not a cached singleton
        "class Rt:\n    def __init__(self):\n        Rt._listener = add_listener(self)\n",
        # a classmethod setter stores what it is given
        "class Holder:\n    @classmethod\n    def set(cls, value):\n        cls._value = value\n",
    ],
)
def test_us003_negatives(source: str) -> None:
    assert found(source) == []


# -- US004 cached zero-argument factories ----------------------------------------------


@pytest.mark.parametrize(
    "decorator",
    ["@lru_cache", "@lru_cache()", "@lru_cache(maxsize=None)", "@functools.cache", "@ft.cache"],
)
def test_us004_cached_zero_arg_factory(decorator: str) -> None:
    imports = "import functools\nimport functools as ft\nfrom functools import lru_cache\n\n"
    source = f"{imports}{decorator}\ndef get_manager():\n    return Manager()\n"
    assert found(source) == [("US004", 6)]


@pytest.mark.parametrize(
    "source",
    [
        "from functools import lru_cache\n@lru_cache\ndef tokenizer(model):\n    return model\n",
        (
            "from functools import lru_cache\n@lru_cache\ndef get_settings() -> Settings:\n"
            "    return Settings()\n"
        ),
        "from functools import lru_cache\n@lru_cache\ndef get_config():\n    return AppConfig()\n",
        "from mylib import cache\n@cache\ndef get_manager():\n    return Manager()\n",
        # immutable results cannot carry per-user state
        "from functools import cache\n@cache\ndef names() -> frozenset[str]:\n    return x\n",
        "from functools import cache\n@cache\ndef pattern() -> 're.Pattern[str]':\n    return x\n",
        "from functools import cache\n@cache\ndef setup_logging() -> None:\n    configure()\n",
        "def get_manager():\n    return Manager()\n",
    ],
)
def test_us004_negatives(source: str) -> None:
    assert found(source) == []


# -- US005 Singleton-family providers of per-user classes ------------------------------

_CONTAINER = """\
from dependency_injector import containers, providers
from dependency_injector.providers import Singleton as S

class UserState:
    def __init__(self, user_id):
        self.user_id = user_id

class Prefs(BaseModel):
    session: Session
    theme: str = "dark"

class HttpClient:
    def __init__(self, timeout):
        self.timeout = timeout

def open_conn(ctx):
    yield ctx

class Container(containers.DeclarativeContainer):
    {line}
"""


@pytest.mark.parametrize(
    "line",
    [
        "state = providers.Singleton(UserState)",
        "state = providers.ThreadSafeSingleton(UserState)",
        "state = providers.ThreadLocalSingleton(UserState)",
        "state = providers.ContextLocalSingleton(UserState)",
        "state = S(UserState)",
        "prefs = providers.Singleton(Prefs)",
        "conn = providers.Resource(open_conn)",
        "client = providers.Singleton(HttpClient, timeout=1, user_id='x')",
        "registry = providers.Singleton(AgentRegistry)",
    ],
)
def test_us005_singleton_provider_of_per_user_class(line: str) -> None:
    assert found(_CONTAINER.format(line=line)) == [("US005", 20)]


@pytest.mark.parametrize(
    "line",
    [
        "client = providers.Singleton(HttpClient, timeout=1)",
        "settings = providers.Singleton(Settings)",
        "state = providers.Factory(UserState)",
        "state = UserScoped(UserState)",
        "registry = providers.Singleton(AppConfig)",
        "thing = Singleton(UserState)",  # not dependency-injector's Singleton
    ],
)
def test_us005_negatives(line: str) -> None:
    assert found(_CONTAINER.format(line=line)) == []


# -- US006 module-level per-user containers --------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        "_data[user_id] = 1",
        "_data[ctx.user_id]['history'] = []",
        "_data.setdefault(user.id, [])",
        "_data[session_id].append(1)",
        "del _data[user_id]",
        "_data.update({user_id: 1})",
    ],
)
def test_us006_keyed_by_user_and_mutated(body: str) -> None:
    source = f"_data = {{}}\n\ndef f(user_id, ctx, user, session_id):\n    {body}\n"
    assert found(source) == [("US006", 1)]


def test_us006_container_named_after_users_counts_without_a_user_key() -> None:
    source = "active_sessions = set()\n\ndef f(token):\n    active_sessions.add(token)\n"
    assert found(source) == [("US006", 1)]


@pytest.mark.parametrize(
    "source",
    [
        # keyed by something else
        "_handlers = {}\ndef register(name, fn):\n    _handlers[name] = fn\n",
        # keyed by user but never mutated in a function
        "_by_user = {'alice': 1}\n",
        # local variable shadows the module name
        "_data = {}\ndef f(user_id):\n    _data = {}\n    _data[user_id] = 1\n",
        # mutated at module level only
        "_data = {}\n_data['user_id'] = 1\n",
    ],
)
def test_us006_negatives(source: str) -> None:
    assert found(source) == []


# -- US007 deprecated accessor calls ---------------------------------------------------


def test_us007_bare_and_dotted_accessor_names() -> None:
    config = AuditConfig(
        deprecated_accessors={"get_bridge": "use Container.bridge", "app.db.get_pool": ""}
    )
    source = """\
    from app.ws import get_bridge
    import app.db as db
    from app.db import get_pool as pool

    def handler():
        get_bridge()
        db.get_pool()
        pool()
        other.get_pool()
    """
    findings = scan_source(textwrap.dedent(source), config=config)
    assert [(f.code, f.line) for f in findings] == [("US007", 6), ("US007", 7), ("US007", 8)]
    assert findings[0].message.endswith("use Container.bridge")
    assert findings[0].symbol == "handler>get_bridge"


def test_us007_nothing_configured_means_nothing_reported() -> None:
    assert found("get_bridge()\n") == []


# -- US000, ignores, columns, disable -------------------------------------------------


def test_us000_unparsable_source_is_a_finding_not_a_crash() -> None:
    [finding] = scan_source("def broken(:\n    pass\n", path="bad.py")
    assert (finding.code, finding.line, finding.path) == ("US000", 1, "bad.py")
    assert "could not parse" in finding.message


def test_us000_undecodable_bytes() -> None:
    [finding] = scan_source(b"x = '\xff\xfe'\n", path="latin.py")
    assert finding.code == "US000"
    assert "decode" in finding.message


def test_coding_cookie_is_honoured() -> None:
    source = "# -*- coding: latin-1 -*-\nname = 'caf\xe9'\nregistry = AgentRegistry()\n"
    findings = scan_source(source.encode("latin-1"))
    assert [(f.code, f.line) for f in findings] == [("US001", 3)]


def test_invalid_escape_sequences_do_not_warn() -> None:
    # pytest turns warnings into errors: parsing must not emit SyntaxWarning/DeprecationWarning
    assert found('pattern = "\\d+"\nregistry = AgentRegistry()\n') == [("US001", 2)]


@pytest.mark.parametrize(
    ("comment", "kept"),
    [
        ("# userscope: ignore", []),
        ("# userscope: ignore[US001]", []),
        ("# userscope: ignore[US002, US001]", []),
        ("# userscope:ignore[us001]", []),
        ("# userscope: ignore[US002]", [("US001", 1)]),
        ("# unrelated comment", [("US001", 1)]),
    ],
)
def test_inline_ignore_comments(comment: str, kept: list[tuple[str, int]]) -> None:
    assert found(f"registry = AgentRegistry()  {comment}\n") == kept


def test_ignore_marker_inside_a_string_is_not_a_comment() -> None:
    assert found('registry = AgentRegistry("# userscope: ignore")\n') == [("US001", 1)]


def test_columns_count_characters_not_bytes() -> None:
    source = "class C:\n    note = 'héllo'; s = providers.Singleton(UserAgentState)\n"
    [finding] = scan_source("from dependency_injector import providers\n" + source)
    # "    note = 'héllo'; s = " is 24 characters but 25 UTF-8 bytes
    assert (finding.line, finding.col) == (3, 25)


def test_disabled_rules_are_not_reported() -> None:
    config = AuditConfig(disable=frozenset({"US001"}))
    assert found("registry = AgentRegistry()\n", config) == []


def test_occurrence_index_distinguishes_repeated_symbols() -> None:
    source = "registry = AgentRegistry()\nregistry = AgentRegistry()\n"
    assert [f.occurrence for f in scan_source(source)] == [0, 1]


def test_every_rule_has_a_hint_and_stable_code() -> None:
    assert list(RULES) == [f"US00{n}" for n in range(9)]
    for code, rule in RULES.items():
        assert rule.code == code
        assert rule.hint
        assert rule.level in {"error", "warning", "note"}


def test_finding_exposes_rule_and_hint() -> None:
    finding = Finding("a.py", 1, 1, "US003", "m", "C")
    assert finding.rule is RULES["US003"]
    assert finding.hint == RULES["US003"].hint


# -- robustness ------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet=st.sampled_from("abc_ =()[]{}:.,'\"#\n\t\\@1\x00é")))
def test_never_crashes_on_arbitrary_text(source: str) -> None:
    for finding in scan_source(source, config=AuditConfig(deprecated_accessors={"a": ""})):
        assert finding.code in RULES
        assert finding.line >= 1
        assert finding.col >= 1


def test_deeply_nested_expressions_do_not_crash() -> None:
    source = "x = " + "+".join(["a"] * 5000) + "\nregistry = AgentRegistry()\n"
    assert [code for code, _ in found(source)] in (["US001"], ["US000"])


def test_main_guard_is_script_code_but_calls_are_still_checked() -> None:
    source = """\
    from dependency_injector import providers

    if __name__ == "__main__":
        registry = AgentRegistry()
        state = providers.Singleton(UserState, user_id="demo")
    """
    assert found(source) == [("US005", 5)]
