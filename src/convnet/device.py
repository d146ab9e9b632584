"""Device choice: `auto` takes a CUDA GPU, then Apple's MPS, then the CPU; and whether to compute in bf16 there."""
from __future__ import annotations

import ctypes
import platform
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

from convnet.errors import ConfigError

DEVICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """The device `name` stands for (`auto`, `cpu`, `cuda`, `cuda:1`, `mps`, or a torch.device), refused with a
    ConfigError when it is not there."""
    if isinstance(name, torch.device):
        return name
    if name is not None and not isinstance(name, str):
        raise ConfigError(f"a device is named by a string such as 'cpu' or 'cuda:1', not {type(name).__name__} "
                          f"({name!r:.40}).")
    if name == "":
        raise ConfigError(f"the device is empty; leave it out for auto, or choose one of {', '.join(DEVICES)}.")
    name = (name or "auto").lower()
    kind = name.split(":")[0]
    if kind not in DEVICES:
        raise ConfigError(f"unknown device {name!r}; choose one of {', '.join(DEVICES)}.")
    if kind in ("auto", "cpu") and ":" in name:  # torch takes cpu:3 as the CPU: an index there is a mistake
        raise ConfigError(f"device {name!r}: {kind} takes no index (only cuda does, e.g. cuda:1).")
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
        device = torch.device(name)
    except RuntimeError:  # a malformed index, e.g. cpu:x
        raise ConfigError(f"unknown device {name!r}; choose one of {', '.join(DEVICES)}, optionally with an index "
                          "such as cuda:1.") from None
    if kind == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"--device {name}: there is no such GPU here; PyTorch sees {torch.cuda.device_count()} "
                          "(cuda:0 onwards).")
    return device


def native_bf16(device: torch.device) -> bool:
    """Whether bf16 autocast makes `device` faster than fp32: CUDA GPUs from Ampere on, and the CPUs whose bf16
    instructions multiply twice as many numbers per cycle as their fp32 ones (see `_cpu_bf16_pays`)."""
    if device.type == "cuda":
        # Older GPUs (a T4, a V100) run bf16 only emulated, slower than fp32: torch counts them unless told not to.
        with torch.cuda.device(device):  # it asks the current GPU, which need not be this one
            return torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        return _cpu_bf16_pays()
    return False


def _cpu_bf16_pays() -> bool:
    """AMX (Intel Xeons since Sapphire Rapids) multiplies bf16 tiles and fp32 not at all. AVX-512 BF16 alone pays
    on AMD (Zen 4 and later: an `accurate` step 1.7× as fast as fp32) but not on Intel, whose one bf16 dot-product
    port does no more multiplications per cycle than its two fp32 FMA ports: on a 2-core Xeon without AMX, bf16 made
    a `fast` step 1.3× and an `accurate` step 1.1× slower than fp32 (the conversions cost what the arithmetic does
    not save)."""

    def probe(name: str) -> bool:
        return bool(getattr(torch.cpu, name, lambda: False)())  # absent on non-x86 builds

    if probe("_is_amx_tile_supported"):
        return True
    return probe("_is_avx512_bf16_supported") and "AuthenticAMD" in cpu_vendor()


def cpu_vendor() -> str:
    """The CPU's vendor string (GenuineIntel, AuthenticAMD, …), or "" where it cannot be read."""
    # On Windows platform.processor() names the vendor ("… AuthenticAMD"); elsewhere it is "" or the architecture.
    return cpu_info("vendor_id") or platform.processor()


def cpu_info(field: str) -> str:
    """One field of Linux's /proc/cpuinfo for the first CPU ("model name", "vendor_id"), or "" elsewhere."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                name, _, value = line.partition(":")
                if name.strip() == field:
                    return value.strip()
    except OSError:
        pass
    return ""


def use_bf16(precision: str, device: torch.device) -> bool:
    """`auto` computes in bf16 (autocast; weights and optimiser state stay fp32) where that is faster than fp32."""
    return precision == "bf16" or (precision == "auto" and native_bf16(device))


@contextmanager
def exact_fp32(device: torch.device) -> Iterator[None]:
    """Compute fp32 convolutions in fp32 on a CUDA GPU while inside, as on a CPU.

    cuDNN runs fp32 convolutions as TF32 by default (inputs rounded to a 10-bit mantissa) on GPUs from Ampere on. An
    epoch reported as fp32, such as a recipe's fp32 finish, exists for precision the bf16 epochs lack; it should have
    it. Elsewhere nothing changes. The previous setting comes back on leaving.
    """
    # The per-operation setting, not the legacy allow_tf32: reading that one fails once the conv and RNN settings
    # differ, which is how a user who wants exact fp32 convolutions would have set them. Set and set back, conv's
    # value no longer follows a later change of cuDNN's or PyTorch's general setting (PyTorch has no public way
    # back to that), so it is left alone where it is exact already.
    conv = torch.backends.cudnn.conv
    previous = conv.fp32_precision
    if device.type != "cuda" or previous == "ieee":
        yield
        return
    conv.fp32_precision = "ieee"
    try:
        yield
    finally:
        conv.fp32_precision = previous


def keep_freed_memory() -> None:
    """Let glibc keep freed memory for the next allocation instead of returning it to the system.

    A training step on the CPU frees and allocates the same megabyte-sized activations every time. glibc hands such
    blocks back to the kernel (munmap, or trimming the heap's top) and the next step page-faults them in again, one
    page at a time: on a 2-core Xeon that was 7 % of an `accurate` step (three alternating runs each way). Keeping
    blocks of up to 32 MB on the heap and never trimming it avoids that, for a process whose memory use stays flat
    anyway. Elsewhere (macOS, Windows, musl) nothing changes.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's malloc.h
    mallopt(m_mmap_threshold, 32 << 20)  # glibc's upper bound for this setting on 64-bit systems
    mallopt(m_trim_threshold, 1 << 30)


def flush_denormals() -> bool:
    """Compute with denormal floats flushed to zero on the CPU (FTZ/DAZ), as TensorFlow does in its own threads.

    x86 CPUs compute with denormal numbers (magnitudes below 1.2e-38 in float32) through a slow microcode path, and
    some steps of a training run meet them: on a 2-core Xeon a `lesson` epoch took 8.4-8.7 s with them and 5.7-6.3 s
    flushed (`fast` and `accurate` 3 % and 1 % faster), with no effect on what the networks learn. The setting
    belongs to each thread and new threads inherit it, so it has to be made before PyTorch starts its OpenMP
    threads: `import convnet` does it (made later, it reaches only the calling thread and bought nothing).
    Returns whether the CPU supports it.
    """
    # numpy measures each float type once, the first time it is asked (numpy.ma asks as it loads, np.median loads
    # it): measured with denormals flushed, they seem to have none, and numpy before 2.4 warns so on stderr, in every
    # `convnet predict`. Measured now, before, the measures are kept.
    for kind in (np.half, np.single, np.double, np.longdouble):
        np.finfo(kind)
    return torch.set_flush_denormal(True)
