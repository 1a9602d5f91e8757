"""Start-up cost of one ``reprorec`` process per cell (shell loops, SLURM arrays pay it every cell).

Prints, as medians of ``--repeat`` runs in a fresh store each time (ml-100k from the mirror, TopPop,
``tuner=none``, no progress line):

* ``import``: ``python -c "import benchmark.cli.sweep"`` (what every command loads first);
* ``new cell``: a whole process that runs, logs and finishes a TopPop cell;
* ``skipped rerun``: the same command again, finding the cell FINISHED;

and which modules of a skipped rerun cost most (``python -X importtime``), against the issue's
targets (a new TopPop cell <= 3 s, a skipped rerun <= 1.5 s on the 2-core machine)::

    REPROREC_MIRROR=../shared/datasets python scripts/bench_startup.py --repeat 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CELL = ["dataset=ml-100k", "model=toppop", "tuner=none", "progress=false", "tracking.uri=sqlite:///mlflow.db"]


def timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def top_imports(cwd: Path, env: dict[str, str], n: int = 8) -> list[tuple[float, str]]:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "benchmark.cli.sweep", *CELL],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    rows = []
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            parts = [p.strip() for p in line.removeprefix("import time:").split("|")]
            if parts[1].isdigit() and not parts[2].startswith(" "):
                rows.append((int(parts[1]) / 1e6, parts[2].strip()))
    top = [r for r in rows if "." not in r[1]]  # top-level packages, cumulative
    return sorted(top, reverse=True)[:n]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    imports, new, skip = [], [], []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory(prefix="reprorec-startup-") as tmp:
            cwd = Path(tmp)
            imports.append(timed([sys.executable, "-c", "import benchmark.cli.sweep"], cwd, env))
            new.append(timed([sys.executable, "-m", "benchmark.cli.sweep", *CELL], cwd, env))
            skip.append(timed([sys.executable, "-m", "benchmark.cli.sweep", *CELL], cwd, env))
            heavy = top_imports(cwd, env)  # the cell is FINISHED: a skipped rerun
    print(f"import benchmark.cli.sweep  {statistics.median(imports):6.2f} s")
    print(f"new TopPop cell (process)   {statistics.median(new):6.2f} s   target <= 3.0 s")
    print(f"skipped rerun (process)     {statistics.median(skip):6.2f} s   target <= 1.5 s")
    print("heaviest top-level imports of a skipped rerun (cumulative, -X importtime):")
    for seconds, name in heavy:
        print(f"  {name:<24} {seconds:6.2f} s")


if __name__ == "__main__":
    main()
