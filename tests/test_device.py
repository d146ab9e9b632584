import pytest
import torch

from convnet.device import native_bf16, use_bf16


@pytest.mark.parametrize("has_bf16", [True, False])
def test_auto_precision_follows_the_cpus_bf16_support(monkeypatch, has_bf16):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: has_bf16, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    cpu = torch.device("cpu")
    assert native_bf16(cpu) is has_bf16
    assert use_bf16("auto", cpu) is has_bf16
    assert use_bf16("bf16", cpu) and not use_bf16("fp32", cpu)


def test_amx_alone_counts_as_native_bf16(monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    assert native_bf16(torch.device("cpu"))


def test_other_devices_are_not_assumed_to_have_bf16():
    assert not native_bf16(torch.device("mps")) and not use_bf16("auto", torch.device("mps"))


@pytest.mark.parametrize("native", [True, False])
def test_a_gpu_that_only_emulates_bf16_trains_in_fp32(monkeypatch, native):
    # torch's own answer counts emulated bf16 (a T4, a V100) unless asked not to; emulation is slower than fp32.
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: native or including_emulation)
    gpu = torch.device("cuda")
    assert native_bf16(gpu) is native and use_bf16("auto", gpu) is native
