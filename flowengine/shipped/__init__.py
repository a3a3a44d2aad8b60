"""Hooks of the processes that ship in `processes/`: found without any option, so they run out of the box.

Each module registers into the one `hooks` registry; the import list below is the whole catalogue.
"""

from __future__ import annotations

from flowengine.hooks import HookRegistry

hooks = HookRegistry("shipped")

from flowengine.shipped import common  # noqa: E402,F401  (registers into `hooks`)

__all__ = ["hooks"]
