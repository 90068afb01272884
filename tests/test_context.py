"""UserExecutionContext: validation of ids and child contexts."""

from __future__ import annotations

import uuid

import pytest
from pydantic import PrivateAttr, ValidationError

import userscope as us


def make(**overrides: object) -> us.UserExecutionContext:
    fields: dict[str, object] = {"user_id": "alice", "thread_id": "t-1", "request_id": "r-1"}
    fields.update(overrides)
    return us.UserExecutionContext(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "field", ["user_id", "thread_id", "request_id", "tenant_id", "connection_id"]
)
@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("None", "placeholder"),
        ("null", "placeholder"),
        ("NULL", "placeholder"),
        ("undefined", "placeholder"),
        (" Undefined ", "placeholder"),
        ("al\x00ice", "control character"),
        ("bob\nadmin", "control character"),
        ("x" * 257, "at most 256"),
        ("alice ", "leading or trailing whitespace"),
        ("al\tice", "control character"),
        (" alice", "leading or trailing whitespace"),
        ("al\u200bice", "invisible format character U+200B"),
        ("\u202ealice", "invisible format character U+202E"),
        ("alice\ufeff", "invisible format character U+FEFF"),
    ],
)
def test_bad_ids_are_refused_naming_the_field(field: str, bad: str, reason: str) -> None:
    with pytest.raises(ValidationError) as info:
        make(**{field: bad})
    errors = info.value.errors()
    assert [e["loc"] for e in errors] == [(field,)]
    assert reason in errors[0]["msg"]


def test_longest_allowed_id_and_unicode_are_accepted() -> None:
    ctx = make(user_id="x" * 256, thread_id="tråd-✓")
    assert len(ctx.user_id) == 256
    assert ctx.thread_id == "tråd-✓"


def test_non_string_ids_are_refused() -> None:
    with pytest.raises(ValidationError) as info:
        make(user_id=42)
    assert info.value.errors()[0]["loc"] == ("user_id",)


def test_unknown_fields_are_refused() -> None:
    with pytest.raises(ValidationError) as info:
        make(role="admin")
    assert info.value.errors()[0]["loc"] == ("role",)


def test_context_is_frozen_and_hashable() -> None:
    ctx = make()
    with pytest.raises(ValidationError):
        ctx.user_id = "mallory"  # type: ignore[misc]
    assert hash(ctx) == hash(make())
    assert ctx == make()


def test_for_request_keeps_user_and_makes_fresh_ids() -> None:
    ctx = make(connection_id="c-1", tenant_id="acme", metadata={"role": "admin"})
    first, second = ctx.for_request(), ctx.for_request()
    assert first.user_id == second.user_id == "alice"
    assert first.tenant_id == second.tenant_id == "acme"
    assert first.user_key == ("acme", "alice")
    assert first.thread_id == "t-1"
    assert first.connection_id == "c-1"
    assert first.metadata == {"role": "admin"}
    assert len({ctx.request_id, first.request_id, second.request_id}) == 3
    assert ctx.for_request(request_id="r-9", thread_id="t-9").model_dump(
        include={"request_id", "thread_id"}
    ) == {"request_id": "r-9", "thread_id": "t-9"}


def test_for_request_copy_equals_a_validated_child_and_shares_no_metadata() -> None:
    ctx = make(connection_id="c-1", tenant_id="acme", metadata={"role": "admin"})
    child = ctx.for_request()
    validated = us.UserExecutionContext(**{**ctx.model_dump(), "request_id": child.request_id})
    assert child == validated
    assert hash(child) == hash(validated)
    assert child.metadata == {"role": "admin"}
    assert child.metadata is not ctx.metadata
    parsed = uuid.UUID(hex=child.request_id)
    assert (parsed.version, parsed.variant, parsed.hex) == (4, uuid.RFC_4122, child.request_id)


def test_for_request_copy_is_a_whole_model_like_pydantics_own_copy() -> None:
    ctx = make(connection_id="c-1", metadata={"role": "admin"})
    child = ctx.for_request()
    reference = ctx.model_copy(
        update={"request_id": child.request_id, "metadata": dict(ctx.metadata)}
    )
    assert child.__pydantic_fields_set__ == reference.__pydantic_fields_set__
    assert child.model_dump() == reference.model_dump()
    assert (child.__pydantic_extra__, child.__pydantic_private__) == (None, None)
    with pytest.raises(ValidationError):
        child.user_id = "mallory"  # type: ignore[misc]
    assert (
        child.model_dump(exclude_unset=True).keys()
        == reference.model_dump(exclude_unset=True).keys()
    )


def test_for_request_copies_a_subclass_with_private_state() -> None:
    class Traced(us.UserExecutionContext):
        _trace: list[str] = PrivateAttr(default_factory=list)

    ctx = Traced(user_id="alice", thread_id="t-1")
    ctx._trace.append("parent")
    child = ctx.for_request()
    assert type(child) is Traced
    assert child._trace == ["parent"]
    assert child.__pydantic_private__ is not ctx.__pydantic_private__  # its own dict
    assert child.request_id != ctx.request_id


def test_for_request_validates_the_new_ids() -> None:
    with pytest.raises(ValidationError) as info:
        make().for_request(request_id="null")
    assert info.value.errors()[0]["loc"] == ("request_id",)


def test_request_id_defaults_to_a_fresh_unique_id() -> None:
    a = us.UserExecutionContext(user_id="alice", thread_id="t")
    b = us.UserExecutionContext(user_id="alice", thread_id="t")
    assert a.request_id != b.request_id


def test_ids_are_nfc_normalised_so_one_user_has_one_spelling() -> None:
    composed = make(user_id="jos\u00e9")
    decomposed = make(user_id="jose\u0301")
    assert decomposed.user_id == composed.user_id == "jos\u00e9"
    assert decomposed == composed
    assert decomposed.user_key == composed.user_key == (None, "jos\u00e9")


def test_tenant_is_part_of_the_user_key_and_the_hash() -> None:
    acme, globex = make(tenant_id="acme"), make(tenant_id="globex")
    assert acme.user_key == ("acme", "alice")
    assert globex.user_key == ("globex", "alice")
    assert make().user_key == (None, "alice")
    assert acme != globex
    assert len({hash(acme), hash(globex), hash(make())}) == 3
