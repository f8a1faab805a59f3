"""Per-call cost of the sandboxed Python tool: the median wall time of a trivial call.

    python -m benchmarks.sandbox_call                         # 200 calls of `1 + 1`
    python -m benchmarks.sandbox_call --modes namespace landlock none --calls 300

Each call starts a fresh interpreter, applies the limits and the isolation layers, runs the code
and tears everything down, so this is the fixed price an agent pays per ``<python>`` call. With
several ``--modes`` (``PythonSandbox(filesystem=...)``; ``none`` is run with
``allow_unisolated=True``) the calls alternate between them, so that every mode sees the same
machine load. The report names the layers that took effect and the machine's CPU flags.
"""

from __future__ import annotations

import argparse
import statistics
import time

from benchmarks.stats import cpu_flags_text, machine_info
from textgym.errors import SandboxUnavailableError
from textgym.tools import PythonSandbox
from textgym.tools.python_sandbox import FILESYSTEM_MODES


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200, help="calls per mode (default 200)")
    parser.add_argument("--code", default="1 + 1", help="the program each call runs")
    parser.add_argument(
        "--modes", nargs="+", default=["auto"], choices=FILESYSTEM_MODES, help="filesystem modes"
    )
    args = parser.parse_args(argv)
    tools = {}
    for mode in args.modes:
        tool = PythonSandbox(filesystem=mode, allow_unisolated=mode == "none")
        try:
            print(f"{mode}: {tool.isolation()}")
        except SandboxUnavailableError as error:
            print(f"{mode}: not available here ({error})")
            continue
        tool(args.code)  # warm the page cache
        tools[mode] = tool
    seconds: dict[str, list[float]] = {mode: [] for mode in tools}
    for i in range(args.calls):
        order = list(tools) if i % 2 == 0 else list(reversed(tools))
        for mode in order:
            start = time.perf_counter()
            result = tools[mode](args.code)
            seconds[mode].append(time.perf_counter() - start)
            if not result.ok:
                raise SystemExit(f"{mode}: the call failed: {result.error}")
    for mode, times in seconds.items():
        low, _, high = statistics.quantiles(times, n=4)
        print(
            f"{mode}: {args.calls} calls of {args.code!r}: median "
            f"{1000 * statistics.median(times):.1f} ms (quartiles {1000 * low:.1f}-"
            f"{1000 * high:.1f} ms)"
        )
    print(f"CPU: {cpu_flags_text(machine_info())}")


if __name__ == "__main__":
    main()
