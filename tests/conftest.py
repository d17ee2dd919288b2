"""Fixtures shared by every test package."""

from tests.hub_server import hub  # noqa: F401  (the local Hugging Face Hub stand-in)
