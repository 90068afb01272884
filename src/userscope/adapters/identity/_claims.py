"""Reading mapped claims out of verified JWT claims (private helpers)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["MISSING", "claim_value", "string_list"]

#: what :func:`claim_value` returns for an absent claim
MISSING: Any = object()


def claim_value(claims: Mapping[str, Any], name: str) -> Any:
    """The claim ``name``: the exact key first, else a dotted path into nested objects.

    The exact key wins, so namespaced claims such as
    ``"https://example.com/roles"`` (Auth0) work; ``"realm_access.roles"``
    (Keycloak) walks into nested objects.

    Example:
        >>> from userscope.adapters.identity._claims import claim_value, MISSING
        >>> claim_value({"realm_access": {"roles": ["admin"]}}, "realm_access.roles")
        ['admin']
        >>> claim_value({"https://example.com/roles": ["a"]}, "https://example.com/roles")
        ['a']
        >>> claim_value({}, "tid") is MISSING
        True
    """
    if name in claims:
        return claims[name]
    if "." not in name:
        return MISSING
    value: Any = claims
    for part in name.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return MISSING
        value = value[part]
    return value


def string_list(value: Any, *, space_separated: bool) -> tuple[str, ...] | None:
    """Roles, scopes or groups as a tuple of strings; ``None`` when the shape is wrong.

    A list of strings stays as it is; one string is one item, or, for OAuth
    ``scope`` claims (``space_separated``), a space-separated list.

    Example:
        >>> from userscope.adapters.identity._claims import string_list
        >>> string_list("openid profile", space_separated=True)
        ('openid', 'profile')
        >>> string_list(["admin", "reader"], space_separated=False)
        ('admin', 'reader')
        >>> string_list([1, 2], space_separated=False) is None
        True
    """
    if isinstance(value, str):
        return tuple(value.split()) if space_separated else (value,)
    if isinstance(value, list | tuple) and all(isinstance(item, str) for item in value):
        return tuple(value)
    return None
