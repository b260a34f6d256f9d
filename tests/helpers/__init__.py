"""Helpers shared by test modules (real files and paths; no mocks)."""
