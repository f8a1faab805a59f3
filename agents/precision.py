"""How a policy computes: bf16 autocast or fp32, and ``torch.compile`` or eager.

:func:`resolve_precision` turns ``"auto"``/``"fp32"``/``"bf16"`` into an autocast dtype (bf16 only
where it is native: CUDA, or CPUs with AMX or AVX512-BF16, see :func:`bf16_supported`);
:func:`resolve_compile` turns ``"auto"``/``True``/``False``/a backend name into a
``torch.compile`` backend (``"auto"``: inductor on CUDA, eager elsewhere). Weights stay fp32 either
way: they are the optimizer's master copy.
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch

PRECISIONS = ("auto", "fp32", "bf16")


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (``/proc/cpuinfo``), empty where they cannot be read."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: no reliable way to ask; stay in fp32
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def bf16_supported(device: str | torch.device) -> bool:
    """Whether bf16 matmuls are native (fast) on ``device``: CUDA with bf16, or a CPU with AMX or
    AVX512-BF16 (on other CPUs bf16 is emulated and slower than fp32)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return bool({"amx_bf16", "avx512_bf16"} & cpu_flags())
    return False


def resolve_precision(precision: str, device: str | torch.device) -> torch.dtype | None:
    """The autocast dtype for ``precision`` (``"auto"``, ``"fp32"``, ``"bf16"``); None = fp32."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    return torch.bfloat16 if bf16_supported(device) else None


def resolve_compile(compile: bool | str, device: str | torch.device) -> str | None:
    """The ``torch.compile`` backend for ``compile``, or None (eager).

    ``"auto"``: ``"inductor"`` on CUDA (where compiling pays off), eager elsewhere (on CPU the
    first compilation takes minutes and gains little). ``True``: ``"inductor"``; ``False`` or
    ``"off"``: eager; any other string: that backend (``torch._dynamo.list_backends()``, or
    ``"eager"``/``"aot_eager"``, which trace without generating code, for debugging).
    """
    if compile == "auto":
        return "inductor" if torch.device(device).type == "cuda" else None
    if compile is True:
        return "inductor"
    if compile is False or compile == "off":
        return None
    backends = {"eager", "aot_eager", *torch._dynamo.list_backends(exclude_tags=())}
    if compile not in backends:
        raise ValueError(
            f"compile must be 'auto', True, False, 'off' or a torch.compile backend "
            f"({', '.join(sorted(backends))}), got {compile!r}"
        )
    return compile
