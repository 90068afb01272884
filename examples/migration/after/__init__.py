"""The chat backend of `before/`, moved onto userscope.

Per-user objects are scoped providers (`container.py`); the old accessors are
legacy shims (`accessors.py`) so call sites not migrated yet keep working, with a
warning and a report, until the old singletons (`old_singletons.py`) are deleted.
"""
