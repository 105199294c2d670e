"""Fixtures of the target tests."""

from _fake_labs import fake_labs  # noqa: F401 (a fixture, found by name)
