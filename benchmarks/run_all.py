"""Run every benchmark driver in turn (``make bench``); each prints its own figures."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

DRIVERS = [
    ["bench_sim.py"],
    ["bench_fluid.py"],
    ["bench_dp.py"],
    ["bench_rl.py"],
    ["bench_catalog.py", "solve", "medium", "large", "--exact"],
]

if __name__ == "__main__":
    here = Path(__file__).parent
    for name, *args in DRIVERS:
        print(f"== {name}", flush=True)
        subprocess.run([sys.executable, str(here / name), *args], check=True)
