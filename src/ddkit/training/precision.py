"""Which precision ``ddkit train --precision auto`` (the default) trains in.

bf16 autocast pays only where the hardware computes in bf16 natively and the network is large
enough for its convolutions and matmuls to dominate (``benchmarks/throughput.py --compare
precision`` measures it; the docs' "Precision" results). The rule:

* CUDA: bf16 when ``torch.cuda.is_bf16_supported()``, else fp32.
* CPU: bf16 when the CPU has native bf16 (AVX512-BF16 or AMX-BF16) and the network has at least
  :data:`AUTO_BF16_MIN_PARAMS` parameters, else fp32. On a CPU without native bf16 it is emulated
  and slower; in smaller networks the casts autocast adds weigh more, so they stay in fp32.

The choice is a pure function of the hardware and the model, so a run and its resume agree, and
the trainer records the resolved choice in config.json.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

AUTO_BF16_MIN_PARAMS = 1_000_000
"""The smallest network (in parameters) that ``auto`` trains in bf16 on a CPU."""


def cpu_has_native_bf16() -> bool:
    """True when the CPU computes bf16 natively: AVX512-BF16 or AMX (torch's own checks, else
    the flags in /proc/cpuinfo)."""
    for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        check = getattr(torch.cpu, name, None)
        if check is not None and check():
            return True
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str, device: torch.device | str, model: nn.Module) -> tuple[str, str]:
    """``(fp32 | bf16 | fp16, why)``: ``precision`` itself unless it is ``"auto"``."""
    if precision != "auto":
        return precision, "as asked"
    device = torch.device(device)
    if device.type == "cuda":
        ok = torch.cuda.is_bf16_supported()
        return ("bf16", "the GPU supports bf16") if ok else ("fp32", "the GPU has no bf16")
    if not cpu_has_native_bf16():
        return "fp32", "the CPU has no native bf16 (AVX512-BF16 or AMX)"
    params = sum(p.numel() for p in model.parameters())
    if params < AUTO_BF16_MIN_PARAMS:
        return "fp32", (
            f"the CPU has native bf16, but the model's {params / 1e6:.1f}M parameters are below "
            f"{AUTO_BF16_MIN_PARAMS / 1e6:.0f}M, the smallest size where bf16 was measured to help"
        )
    return "bf16", f"the CPU has native bf16 and the model has {params / 1e6:.1f}M parameters"


def fused_adamw_supported(device: torch.device) -> bool:
    """The fused AdamW kernel: CUDA always, the CPU from torch 2.4 (older versions fall back)."""
    if device.type == "cuda":
        return True
    major, minor = (int(p) for p in torch.__version__.split(".")[:2])
    return device.type == "cpu" and (major, minor) >= (2, 4)
