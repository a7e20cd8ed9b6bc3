"""What every kind of test agrees on: where the repository is, and the API key the simulators accept.

The key is a test value, never a real one: the worker reads it from ``TEST_KEY_ENV``, as a deployment reads a
connector's key from its environment.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TEST_API_KEY = "test-key-0123456789abcdef"
TEST_KEY_ENV = "JUMPSYNC_TEST_API_KEY"
