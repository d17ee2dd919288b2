"""Fixtures shared by every test package."""

from tests.hub_server import hf_cache, hub  # noqa: F401  (the local Hugging Face Hub stand-in, isolated caches)
