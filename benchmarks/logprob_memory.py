"""Peak memory of the chunked log-prob + entropy path vs a naive ``log_softmax`` + gather.

At SmolLM2-135M's shape (hidden 576, vocabulary 49,152) and a realistic batch x completion
length, for inference (no grad) and training (forward + backward), each path runs in a fresh
child process and reports its peak memory *above* what the inputs already hold: on CPU the
growth of the process's peak RSS (``VmHWM`` after resetting it through ``/proc/self/clear_refs``,
Linux), on CUDA ``torch.cuda.max_memory_allocated``.
The naive path is given the completion positions only (as the chunked path), so the comparison
is about the vocabulary dimension alone. The children run with ``MALLOC_MMAP_THRESHOLD_=65536``:
glibc then maps every large buffer separately and unmaps it when freed, so RSS follows live
memory (with its default, adaptive threshold, freed chunk buffers linger in the heap and the
figure becomes allocator noise).

    python -m benchmarks.logprob_memory                       # 16 x 128 tokens
    python -m benchmarks.logprob_memory --batch 32 --length 256 --json out.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import re
import time
from pathlib import Path

import torch


def _status(field: str) -> int:
    """A ``/proc/self/status`` memory figure, in bytes."""
    text = Path("/proc/self/status").read_text()
    return int(re.search(rf"^{field}:\s+(\d+) kB", text, re.M).group(1)) * 1024


def _measure(
    path: str, train: bool, rows: int, hidden: int, vocab: int, device: str, queue
) -> None:
    from agents.token_stats import naive_token_logprobs, token_logprobs

    torch.manual_seed(0)
    weight = (torch.randn(vocab, hidden, device=device) * 0.05).requires_grad_(train)
    states = torch.randn(rows, hidden, device=device).requires_grad_(train)
    targets = torch.randint(0, vocab, (rows,), device=device)
    coef = torch.randn(rows, device=device)
    fn = naive_token_logprobs if path == "naive" else token_logprobs
    # Warm up on a few rows: the first call faults in kernel code pages and allocator pools,
    # which would otherwise count as (file-backed) peak RSS of whichever path ran first.
    with torch.set_grad_enabled(train):
        logp, ent = fn(states[:8], weight, targets[:8])
        if train:
            (logp.sum() + ent.sum()).backward()
            weight.grad = states.grad = None
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        Path("/proc/self/clear_refs").write_text("5")  # reset the peak RSS to the current RSS
        base = _status("VmRSS")
    start = time.perf_counter()
    with torch.set_grad_enabled(train):
        logp, ent = fn(states, weight, targets)
        loss = (logp * coef).sum() + 0.01 * ent.sum()
        if train:
            loss.backward()
    if device == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - base
    else:
        peak = _status("VmHWM") - base
    queue.put((peak, time.perf_counter() - start, loss.item()))


def measure(path: str, train: bool, rows: int, hidden: int, vocab: int, device: str) -> tuple:
    """(peak bytes above the inputs, seconds, loss) of one path, in a fresh process."""
    os.environ["MALLOC_MMAP_THRESHOLD_"] = "65536"  # read by glibc when the child starts
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_measure, args=(path, train, rows, hidden, vocab, device, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--length", type=int, default=128, help="completion tokens per sequence")
    p.add_argument("--hidden", type=int, default=576)
    p.add_argument("--vocab", type=int, default=49_152)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    rows = args.batch * args.length
    results = {
        "batch": args.batch,
        "length": args.length,
        "vocab": args.vocab,
        "hidden": args.hidden,
        "device": args.device,
        "modes": {},
    }
    print(
        f"log-prob + entropy of {args.batch} x {args.length} tokens, V = {args.vocab:,}, "
        f"hidden {args.hidden}, {args.device}\n"
    )
    print("| mode | naive peak | chunked peak | ratio | naive s | chunked s |")
    print("|---|---|---|---|---|---|")
    for train in (False, True):
        mode = "forward + backward" if train else "forward (no grad)"
        naive = measure("naive", train, rows, args.hidden, args.vocab, args.device)
        chunked = measure("chunked", train, rows, args.hidden, args.vocab, args.device)
        ratio = chunked[0] / naive[0]
        results["modes"][mode] = {
            "naive_bytes": naive[0],
            "chunked_bytes": chunked[0],
            "ratio": ratio,
            "naive_seconds": naive[1],
            "chunked_seconds": chunked[1],
            "loss_diff": abs(naive[2] - chunked[2]),
        }
        print(
            f"| {mode} | {naive[0] / 2**20:,.0f} MiB | {chunked[0] / 2**20:,.0f} MiB | "
            f"{ratio:.3f}x | {naive[1]:.2f} | {chunked[1]:.2f} |"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return results


if __name__ == "__main__":
    main()
