"""Fixture package (scanned, never imported)."""
