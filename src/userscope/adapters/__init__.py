"""Integrations: FastAPI, pytest, legacy migration shims."""
