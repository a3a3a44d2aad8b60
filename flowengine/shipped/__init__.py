"""Hooks of the processes that ship in `processes/`: found without any option, so they run out of the box.

Each module registers into the one `hooks` registry; the import list below is the whole catalogue.
"""

from __future__ import annotations

from flowengine.hooks import HookRegistry

hooks = HookRegistry("shipped")

# Imported for their registrations, after `hooks` exists.
from flowengine.shipped import (  # noqa: E402, F401
    bank_equipment_repair,
    common,
    complaint_handling,
    fault_report_95598,
    new_customer_archiving,
    order_review,
    order_to_cash,
    repair_service,
)

__all__ = ["hooks"]
