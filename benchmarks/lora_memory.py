"""Memory of policy + reference + value head: LoRA (reference = adapter off) vs full copies.

    python -m benchmarks.lora_memory --model smollm2-135m --json lora_memory.json

Each variant is built in its own subprocess (so peak RSS is its own): the LMPolicy with its value
head, the reference the learners use (a frozen deep copy, or with LoRA the same weights with the
adapter switched off) and AdamW's state after one optimizer step. Reports the bytes of
parameters + buffers (counting shared storage once), the trainable parameters, the optimizer
state, and the process's peak RSS (``VmHWM``; CUDA max allocated on a GPU).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path


def _tensor_bytes(modules) -> int:
    seen, total = set(), 0
    for module in modules:
        for t in [*module.parameters(), *module.buffers()]:
            key = (t.untyped_storage().data_ptr(), t.device)
            if key not in seen:
                seen.add(key)
                total += t.untyped_storage().nbytes()
    return total


def measure(model: str, lora_r: int | None) -> dict:
    """Build one variant in this process and measure it."""
    import torch

    from agents import LMPolicy

    torch.set_num_threads(2)
    lora = {"r": lora_r, "target_modules": "all-linear"} if lora_r else None
    policy = LMPolicy.from_pretrained(model, lora=lora, precision="fp32")
    policy.ensure_reference()
    params = [p for p in policy.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-5)
    for p in params:  # one step so that AdamW allocates its state
        p.grad = torch.zeros_like(p)
    optimizer.step()
    modules = [policy] + ([policy.ref_model] if policy.ref_model is not None else [])
    opt_bytes = sum(
        t.nbytes for s in optimizer.state.values() for t in s.values() if torch.is_tensor(t)
    )
    peak = None
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            peak = int(line.split()[1]) / 1024
    return {
        "variant": f"LoRA r={lora_r} (reference = adapter off)" if lora_r else "full copies",
        "weights_mib": round(_tensor_bytes(modules) / 2**20, 1),
        "trainable_params": sum(p.numel() for p in params),
        "optimizer_state_mib": round(opt_bytes / 2**20, 1),
        "total_mib": round((_tensor_bytes(modules) + opt_bytes) / 2**20, 1),
        "peak_rss_mib": round(peak, 1) if peak else None,
        "cuda_max_allocated_mib": (
            round(torch.cuda.max_memory_allocated() / 2**20, 1)
            if torch.cuda.is_available()
            else None
        ),
    }


def run(model: str = "smollm2-135m", lora_r: int = 16) -> list[dict]:
    rows = []
    for r in (0, lora_r):
        code = (
            "import json, sys; from benchmarks.lora_memory import measure; "
            f"print(json.dumps(measure({model!r}, {r or None})))"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return rows


def table(rows: list[dict]) -> str:
    lines = [
        "| variant | weights MiB | trainable params | AdamW state MiB | total MiB | peak RSS MiB |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['variant']} | {r['weights_mib']} | {r['trainable_params']:,} | "
        f"{r['optimizer_state_mib']} | {r['total_mib']} | {r['peak_rss_mib']} |"
        for r in rows
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--lora-r", type=int, default=16)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    rows = run(args.model, args.lora_r)
    print(table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return rows


if __name__ == "__main__":
    main()
