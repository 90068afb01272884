"""Migration example: a legacy agent backend (`before/`) moved onto userscope (`after/`).

Walked step by step in docs/migration.md; `test_migration.py` runs both versions.
"""
