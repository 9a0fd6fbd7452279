"""Real preparation times for the simulator's kitchens, from Grubhub's published instances.

The packaged file ``data/grubhub_prep.json`` holds, for each restaurant of the Meal Delivery
Routing Problem instances (seeds 0-4, variant ``o100t100s1p100``) with at least
``MIN_ORDERS`` orders, its orders' ``ready_time - placement_time`` in whole minutes, keyed
``"{seed}:{restaurant}"``. ``python -m ontheway.sim.prepdata <mdrp folder>`` writes it anew
from the instances' ``orders.txt`` (the other variants repeat these restaurants).
"""

from __future__ import annotations

import csv
import json
import sys
from functools import cache
from importlib import resources
from pathlib import Path

SEEDS = range(5)
VARIANT = "o100t100s1p100"
MIN_ORDERS = 8
ATTRIBUTION = (
    "Preparation times derived from Grubhub's Meal Delivery Routing Problem instances "
    "(grubhub/mdrplib, public_instances), seeds 0-4, o100t100s1p100."
)
PACKAGED = Path(__file__).parent / "data" / "grubhub_prep.json"

# A restaurant's preparation times in minutes, by its key ``"{seed}:{restaurant}"``.
PrepTable = dict[str, tuple[float, ...]]


def read_instances(folder: Path) -> dict[str, list[int]]:
    """Each busy restaurant's preparation minutes (ready minus placement), from the
    instances under ``folder`` (one sub-folder per instance, as published)."""
    out: dict[str, list[int]] = {}
    for seed in SEEDS:
        per: dict[str, list[int]] = {}
        with (folder / f"{seed}{VARIANT}" / "orders.txt").open(newline="") as f:
            for row in csv.DictReader(f, delimiter="\t"):
                minutes = int(row["ready_time"]) - int(row["placement_time"])
                per.setdefault(row["restaurant"], []).append(minutes)
        out.update({f"{seed}:{r}": m for r, m in per.items() if len(m) >= MIN_ORDERS})
    return out


def render(minutes: dict[str, list[int]]) -> str:
    """The data file's text: the attribution, then one restaurant a line."""
    lines = [f"  {json.dumps(k)}: {json.dumps(minutes[k])}" for k in sorted(minutes)]
    head = f'{{\n  "attribution": {json.dumps(ATTRIBUTION)},\n  "minutes": {{\n'
    return head + ",\n".join("  " + line for line in lines) + "\n  }\n}\n"


@cache
def packaged() -> PrepTable:
    """The packaged table (read once per process)."""
    text = resources.files("ontheway.sim").joinpath("data/grubhub_prep.json").read_text()
    return {k: tuple(float(m) for m in v) for k, v in json.loads(text)["minutes"].items()}


def main(argv: list[str]) -> int:
    """``python -m ontheway.sim.prepdata <mdrp folder> [out.json]``: write the data file."""
    if len(argv) not in (1, 2):
        print("usage: python -m ontheway.sim.prepdata <mdrp folder> [out.json]", file=sys.stderr)
        return 2
    out = Path(argv[1]) if len(argv) == 2 else PACKAGED
    minutes = read_instances(Path(argv[0]))
    out.write_text(render(minutes))
    print(f"{len(minutes)} restaurants written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
