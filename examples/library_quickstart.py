"""flowengine as a library, in one screen: drive a repair through the shipped `repair_service` process.

Opens an engine on a throw-away SQLite file with the YAML in the repository's `processes/`, walks the
spec's example path RP-1 (in warranty, repaired in house) from `intake` to `closed`, printing each step
and then the append-only history. Run it from anywhere: `python examples/library_quickstart.py`.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path
from zoneinfo import ZoneInfo

from flowengine import Actor, Engine, ManualClock

PROCESSES = Path(__file__).resolve().parent.parent / "processes"
# RP-1 happens on 2 March 2026; a fixed clock keeps the warranty check (the event's date ≤ warranty_until)
# true whatever day this runs.
CLOCK = ManualClock(dt.datetime(2026, 3, 2, 9, 0, tzinfo=ZoneInfo("Asia/Shanghai")))

clerk = Actor("clerk-zhao", {"service_clerk"})
engineer = Actor("eng-wang", {"repair_engineer"})
RP_1 = [  # (event, actor, payload): the spec's path RP-1
    ("register_repair", clerk,
     {"appearance_check": "Intact", "configuration_check": "As registered", "engineer": "eng-wang"}),
    ("fault_diagnosed", engineer, {"fault_description": "Display cable loose"}),
    ("repair_completed", engineer, {"repair_record": "Cable reseated"}),
    ("recheck_passed", engineer, {}),
    ("customer_confirmed", engineer, {}),
]


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, \
            Engine(f"sqlite:///{tmp}/quickstart.db", processes=PROCESSES, clock=CLOCK) as engine:
        repair = engine.start("repair_service", actor=clerk, data={
            "customer_name": "Customer C", "product_model": "NB-14", "serial_no": "SN-1024",
            "fault_symptom": "No display", "warranty_until": "2026-12-31"})
        print(f"started {repair.process} {repair.id} in '{repair.state}'")
        for event, actor, payload in RP_1:
            step = engine.fire(repair.id, event, actor=actor, data=payload)
            print(f"{step.event}: {step.source} → {step.target}")
        final = engine.get(repair.id)
        print(f"final state: {final.state} ({final.status})")
        print("history:")
        for entry in engine.history(repair.id):
            print(f"  {entry.seq}. {entry.event:<20} {entry.source or '-':>22} → {entry.target:<22} "
                  f"by {entry.actor.id} [{', '.join(sorted(entry.actor.roles))}]")


if __name__ == "__main__":
    main()
