"""Public surface of ``userscope.audit`` and the examples in its docstrings."""

from __future__ import annotations

from pathlib import Path

import pytest

import userscope.audit
from userscope.audit import AuditConfig, AuditConfigError, Baseline, BaselineError


def test_public_names_are_exact_and_sorted() -> None:
    assert userscope.audit.__all__ == [
        "DEFAULT_PATTERNS",
        "RULES",
        "SEVERITIES",
        "AuditConfig",
        "AuditConfigError",
        "AuditError",
        "Baseline",
        "BaselineEntry",
        "BaselineError",
        "Finding",
        "Rule",
        "ScanResult",
        "find_config_file",
        "fingerprint",
        "iter_python_files",
        "load_config",
        "main",
        "render",
        "scan_paths",
        "scan_source",
    ]

    def isort_style(name: str) -> tuple[int, str]:  # CONSTANTS, Classes, functions
        return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)

    assert userscope.audit.__all__ == sorted(userscope.audit.__all__, key=isort_style)
    for name in userscope.audit.__all__:
        if not name.isupper():  # constants are documented in docs/audit.md
            assert getattr(userscope.audit, name).__doc__, name


def test_config_error_carries_its_fields(tmp_path: Path) -> None:
    with pytest.raises(AuditConfigError) as caught:
        AuditConfig.from_mapping({"exclude": "build"}, path=tmp_path / "pyproject.toml")
    err = caught.value
    assert (err.key, err.path) == ("exclude", tmp_path / "pyproject.toml")
    assert "list of strings" in err.problem
    assert err.hint == 'write `exclude = ["..."]`'
    assert isinstance(err, ValueError)
    assert str(err).startswith(f"{tmp_path / 'pyproject.toml'}: ")


def test_baseline_error_carries_its_fields(tmp_path: Path) -> None:
    with pytest.raises(BaselineError) as caught:
        Baseline.load(tmp_path / "none.json")
    assert caught.value.path == tmp_path / "none.json"
    assert caught.value.problem == "baseline file does not exist"
    assert "--write-baseline" in caught.value.hint


def test_exclude_semantics(tmp_path: Path) -> None:
    config = AuditConfig(exclude=("migrations", "*_pb2.py", "src/gen/*"), root=tmp_path)
    assert config.is_excluded(Path("app/migrations/0001.py"))
    assert config.is_excluded(Path("app/api_pb2.py"))
    assert config.is_excluded(tmp_path / "src" / "gen" / "x.py")
    assert not config.is_excluded(tmp_path / "src" / "app" / "x.py")
    assert not config.is_excluded(Path("app/migrations_helper.py"))


def test_extend_keys_add_to_defaults() -> None:
    config = AuditConfig.from_mapping(
        {"extend-user-names": ["tenant_id"], "extend-safe-patterns": ["Client"]}
    )
    assert config.is_user_name("tenant_id")
    assert config.is_user_name("user_id")
    assert config.is_safe("HttpClient")
    assert config.is_safe("AppSettings")


def test_config_is_hashable_and_comparable() -> None:
    config = AuditConfig(deprecated_accessors={"get_bridge": ""})
    assert config == AuditConfig(deprecated_accessors={"get_bridge": ""})
    assert hash(config) == hash(AuditConfig(deprecated_accessors={"get_bridge": ""}))


def test_docs_cover_every_rule_with_a_bad_example_and_a_fix() -> None:
    docs = (Path(__file__).resolve().parents[2] / "docs" / "audit.md").read_text()
    for code, rule in userscope.audit.RULES.items():
        start = docs.index(f"\n### {code}\n")
        end = docs.find("\n### ", start + 1)
        section = docs[start : end if end != -1 else None]
        assert f"**{rule.name}**" in section, code
        assert f"level `{rule.level}`" in section, code
        if code != "US000":
            assert "# bad" in section, code
            assert "# fix" in section, code
