"""Runnable examples for userscope (each one has its own test)."""
