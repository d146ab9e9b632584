import contextlib
import platform
import subprocess
import sys

import pytest
import torch

from convnet import device
from convnet.device import native_bf16, use_bf16


def _cpu(monkeypatch, avx512_bf16: bool, amx: bool, vendor: str) -> torch.device:
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
    monkeypatch.setattr(device, "cpu_vendor", lambda: vendor)
    return torch.device("cpu")


@pytest.mark.parametrize(("avx512_bf16", "amx", "vendor", "fast"), [
    (True, False, "AuthenticAMD", True),   # Zen 4: bf16 dot products at twice fp32's rate
    (True, False, "GenuineIntel", False),  # a Xeon without AMX: no more multiplications per cycle, and conversions
    (True, True, "GenuineIntel", True),    # AMX tiles
    (False, True, "GenuineIntel", True),
    (False, False, "AuthenticAMD", False),
    (True, False, "", False),              # vendor unknown: fp32
])
def test_auto_precision_takes_bf16_only_where_it_is_faster(monkeypatch, avx512_bf16, amx, vendor, fast):
    cpu = _cpu(monkeypatch, avx512_bf16, amx, vendor)
    assert native_bf16(cpu) is fast
    assert use_bf16("auto", cpu) is fast
    assert use_bf16("bf16", cpu) and not use_bf16("fp32", cpu)


def test_the_cpu_vendor_is_read_on_this_machine():
    vendor = device.cpu_vendor()
    assert isinstance(vendor, str)
    if sys.platform == "linux" and platform.machine() == "x86_64":
        assert vendor and vendor == vendor.strip() and " " not in vendor  # e.g. GenuineIntel, AuthenticAMD


def test_other_devices_are_not_assumed_to_have_bf16():
    assert not native_bf16(torch.device("mps")) and not use_bf16("auto", torch.device("mps"))


@pytest.mark.parametrize("native", [True, False])
def test_a_gpu_that_only_emulates_bf16_trains_in_fp32(monkeypatch, native):
    # torch's own answer counts emulated bf16 (a T4, a V100) unless asked not to; emulation is slower than fp32.
    # It asks the current GPU: the one to train on is made current while it answers (a T4 beside an A100).
    current = [torch.device("cuda", 0)]

    @contextlib.contextmanager
    def make_current(gpu):
        current.append(gpu)
        yield
        current.pop()

    def supported(including_emulation=True):
        return (native and current[-1].index == 1) or including_emulation

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", supported)
    monkeypatch.setattr(torch.cuda, "device", make_current)
    gpu = torch.device("cuda", 1)
    assert native_bf16(gpu) is native and use_bf16("auto", gpu) is native
    assert not native_bf16(torch.device("cuda", 0)) and len(current) == 1


def test_keep_freed_memory_sets_glibc_s_thresholds_on_linux_only(monkeypatch):
    calls = []

    class FakeLibc:
        def mallopt(self, option, value):
            calls.append((option, value))
            return 1

    monkeypatch.setattr(device.sys, "platform", "linux")
    monkeypatch.setattr(device.ctypes, "CDLL", lambda name: FakeLibc())
    device.keep_freed_memory()
    assert dict(calls) == {-3: 32 << 20, -1: 1 << 30}  # M_MMAP_THRESHOLD at glibc's maximum, M_TRIM_THRESHOLD 1 GB

    calls.clear()
    monkeypatch.setattr(device.sys, "platform", "darwin")
    device.keep_freed_memory()
    assert calls == []


def test_importing_convnet_flushes_denormals_to_zero():
    import convnet  # noqa: F401  (the import is what sets it)

    tiny = torch.tensor(1e-30) * torch.tensor(1e-10)  # 1e-40 is below float32's normal range
    assert tiny.item() == 0.0


_EXACT_FP32 = """
import sys, torch
from convnet.device import exact_fp32
cudnn, setting = torch.backends.cudnn, sys.argv[1]
if setting == "legacy off":
    cudnn.allow_tf32 = False
elif setting == "per operation":  # conv and RNN differ: reading the legacy allow_tf32 would now fail
    cudnn.conv.fp32_precision, cudnn.rnn.fp32_precision = "tf32", "ieee"
before = cudnn.conv.fp32_precision
with exact_fp32(torch.device("cpu")):
    assert cudnn.conv.fp32_precision == before  # nothing to change off a GPU
try:
    with exact_fp32(torch.device("cuda")):
        assert cudnn.conv.fp32_precision == "ieee"
        raise KeyError
except KeyError:
    pass
assert cudnn.conv.fp32_precision == before
if setting != "per operation":
    assert cudnn.allow_tf32 == (setting == "default")
print("ok")
"""


@pytest.mark.parametrize("setting", ["default", "legacy off", "per operation"])
def test_exact_fp32_turns_tf32_off_on_a_gpu_only_while_inside(setting):
    # In a process of its own: cuDNN's precision flags are process-wide, and PyTorch cannot set all of them back.
    done = subprocess.run([sys.executable, "-c", _EXACT_FP32, setting], capture_output=True, text=True)
    assert done.stdout == "ok\n", done.stderr


@pytest.mark.parametrize("name", [5, ["cpu"], b"cpu"])
def test_a_device_that_is_no_string_is_a_clear_error(name):
    from convnet.errors import ConfigError

    with pytest.raises(ConfigError, match="a device is named by a string"):
        device.resolve_device(name)


def test_a_gpu_index_past_the_last_gpu_is_a_clear_error(monkeypatch):
    from convnet.errors import ConfigError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert device.resolve_device("cuda:0") == torch.device("cuda", 0)
    with pytest.raises(ConfigError, match="--device cuda:7: there is no such GPU here; PyTorch sees 1"):
        device.resolve_device("cuda:7")
    with pytest.raises(ConfigError, match="unknown device 'cuda:x'; .* with an index such as cuda:1"):
        device.resolve_device("cuda:x")  # torch.device's own refusal, put in words


@pytest.mark.parametrize("name, words", [("", "the device is empty"), ("auto:1", "auto takes no index"),
                                         ("cpu:3", "cpu takes no index")])
def test_devices_that_name_nothing_real_are_refused(name, words):
    from convnet.errors import ConfigError

    with pytest.raises(ConfigError, match=words):
        device.resolve_device(name)
