"""Fixtures shared across the test tree (tiny models and configs are in tests/tiny_models.py)."""

import pytest

from r1lab import tasks


@pytest.fixture
def empty_registry(monkeypatch):
    """No task registered: each test's `get_task` makes or finds only what the test itself registers."""
    monkeypatch.setattr(tasks, "_registry", {})
