"""Generated code: excluded from the audit by the fixture's pyproject.toml."""

generated_registry = GeneratedRegistry()  # noqa: F821 - would be US001 if audited
