"""Instructions per `note` fire, flowengine against the raw sqlite3 transition, counted by callgrind.

Instruction counts do not depend on what else the machine is doing, so they show what a change to the
hot path gained when wall and CPU time are too noisy to tell. Each side runs twice under
`valgrind --tool=callgrind` (setup only, then setup and N moves); the difference over N is the cost of
one move. Needs valgrind; takes a few minutes.

    python benchmarks/instructions.py [--moves 1000]
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def child(side: str, moves: int) -> None:
    sys.path.insert(0, str(ROOT))
    from benchmarks import baselines
    from benchmarks.common import CLERK
    from benchmarks.flow import ticket_engine

    directory = Path(tempfile.mkdtemp())
    if side == "raw":
        baselines.raw_sqlite(directory, 100, lambda ids: baselines.note_moves(ids, baselines.WARMUP_MOVES + 100
                                                                             + moves), "NORMAL")
        return
    with ticket_engine(f"sqlite:///{directory / 'fire.db'}") as engine:
        ids = [engine.start("ticket", data=baselines.start_data(i), actor=CLERK).id for i in range(100)]
        for i in range(100 + moves):
            engine.fire(ids[i % 100], "note", data={"note": f"note {i}"}, actor=CLERK)


def count(side: str, moves: int) -> int:
    done = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
                           __file__, "--child", side, "--moves", str(moves)], capture_output=True, text=True,
                          check=True)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise SystemExit(f"no instruction count from callgrind:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--moves", type=int, default=1000)
    parser.add_argument("--child", choices=("flowengine", "raw"))
    args = parser.parse_args()
    if args.child:
        child(args.child, args.moves)
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    per_move = {}
    for side in ("flowengine", "raw"):
        per_move[side] = (count(side, args.moves) - count(side, 0)) / args.moves
        print(f"{side}: {per_move[side]:,.0f} instructions per note fire", flush=True)
    print(f"flowengine / raw: {per_move['flowengine'] / per_move['raw']:.2f}")


if __name__ == "__main__":
    main()
