"""Device choice: `auto` takes a CUDA GPU, then Apple's MPS, then the CPU; and whether to compute in bf16 there."""
from __future__ import annotations

import torch

from convnet.errors import ConfigError

DEVICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    if isinstance(name, torch.device):
        return name
    name = (name or "auto").lower()
    kind = name.split(":")[0]
    if kind not in DEVICES:
        raise ConfigError(f"unknown device {name!r}; choose one of {', '.join(DEVICES)}.")
    if kind == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if kind == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA GPU is available to PyTorch here.")
    if kind == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError("--device mps: Apple's MPS is not available here.")
    try:
        return torch.device(name)
    except RuntimeError:  # a malformed index, e.g. cpu:x
        raise ConfigError(f"unknown device {name!r}; choose one of {', '.join(DEVICES)}, optionally with an index "
                          "such as cuda:1.") from None


def native_bf16(device: torch.device) -> bool:
    """Whether `device` multiplies bf16 in hardware: CUDA GPUs from Ampere on, and CPUs with AVX-512 BF16 or AMX
    (recent Intel Xeons, AMD Zen 4 and later), where oneDNN's bf16 convolutions run about 1.7× as fast as fp32."""
    if device.type == "cuda":
        # Older GPUs (a T4, a V100) run bf16 only emulated, slower than fp32: torch counts them unless told not to.
        return torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # absent on non-x86 builds
        return any(getattr(torch.cpu, name, lambda: False)() for name in probes)
    return False


def use_bf16(precision: str, device: torch.device) -> bool:
    """`auto` computes in bf16 (autocast; weights and optimiser state stay fp32) where the hardware has it."""
    return precision == "bf16" or (precision == "auto" and native_bf16(device))
