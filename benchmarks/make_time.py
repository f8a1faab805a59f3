"""How long ``gym.make`` takes for every registered id, each in a fresh process.

    python -m benchmarks.make_time [--ids ID ...] [--family F] [--out make_time.json]

Every id is made once in its own new Python process (what a SubprocVecEnv / AsyncVectorEnv
worker or a torchrun rank pays), with the model files already cached. Each process reports
``import`` (``import gymnasium, textgym``) and ``make`` (``gym.make(id)``) in seconds; the table
lists the slowest ids first and the last line names the slowest make. Processes run one at a
time, so the figures are not inflated by each other.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

CHILD = """
import json, sys, time
start = time.perf_counter()
import gymnasium as gym
import textgym
imported = time.perf_counter()
env = gym.make(sys.argv[1])
made = time.perf_counter()
env.close()
print(json.dumps({"import": imported - start, "make": made - imported}))
"""


def time_make(env_id: str, timeout: float) -> dict:
    """``{"id", "import", "make", "process"}`` in seconds, or ``{"id", "error"}``."""
    start = time.perf_counter()
    try:
        done = subprocess.run(
            [sys.executable, "-c", CHILD, env_id],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return {"id": env_id, "error": f"timed out after {timeout:.0f} s"}
    process = time.perf_counter() - start
    if done.returncode != 0:
        return {"id": env_id, "error": done.stderr.strip().splitlines()[-1:]}
    return {"id": env_id, **json.loads(done.stdout.strip().splitlines()[-1]), "process": process}


def main(argv: list[str] | None = None) -> list[dict]:
    import textgym
    from textgym.registry import FAMILIES

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ids", nargs="*", help="these ids only (default: every id)")
    parser.add_argument("--family", choices=FAMILIES, help="this family's ids only")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per id")
    parser.add_argument("--out", help="also write the rows to this JSON file")
    args = parser.parse_args(argv)

    ids = args.ids or textgym.registered_ids(args.family)
    rows = []
    for k, env_id in enumerate(ids):
        rows.append(time_make(env_id, args.timeout))
        print(f"[{k + 1}/{len(ids)}] {rows[-1]}", file=sys.stderr, flush=True)
    timed = sorted((r for r in rows if "make" in r), key=lambda r: -r["make"])
    print(f"{'id':<40} {'import s':>9} {'make s':>8} {'process s':>10}")
    for r in timed:
        print(f"{r['id']:<40} {r['import']:>9.2f} {r['make']:>8.2f} {r['process']:>10.2f}")
    for r in rows:
        if "error" in r:
            print(f"{r['id']:<40} error: {r['error']}")
    if timed:
        top = timed[0]
        print(
            f"slowest make: {top['id']} {top['make']:.2f} s (import {top['import']:.2f} s, "
            f"whole process {top['process']:.2f} s) over {len(timed)} ids"
        )
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=1)
    return rows


if __name__ == "__main__":
    main()
