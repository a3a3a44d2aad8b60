"""The fixture processes' hooks as an importable module, for `--hooks tests.fixture_hooks_module`."""

from tests.conftest import fixture_hooks

hooks = fixture_hooks()
