import contextlib
import subprocess
import sys

import pytest
import torch

from convnet.data import load_dataset
from convnet.errors import ConfigError
from convnet.evaluate import evaluate
from convnet.graphs import WARM_UP, StepGraph, check_graphs
from convnet.models import create_model
from convnet.train import fit, train

GPU = torch.device("cuda")  # a device object needs no GPU; check_graphs only reads its type


def test_cuda_graphs_need_a_cuda_gpu(tiny_dir):
    with pytest.raises(ConfigError, match="--cuda-graphs needs a CUDA GPU, and this run trains on cpu"):
        fit(create_model("fast"), load_dataset("mnist", tiny_dir), epochs=1, device="cpu", cuda_graphs=True,
            log=None)


def test_the_cli_refuses_cuda_graphs_on_a_cpu_without_a_traceback(tiny_dir, tmp_path):
    done = subprocess.run([sys.executable, "-m", "convnet", "train", "--data-dir", tiny_dir, "--epochs", "1",
                           "--device", "cpu", "--cuda-graphs", "--out", tmp_path / "run"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "--cuda-graphs needs a CUDA GPU" in done.stderr, done.stderr[-2000:]
    assert "Traceback" not in done.stderr and not (tmp_path / "run").exists()
    # Refused before the data are read and the run announced: no "training ... → run" line for a run never made.
    assert "training" not in done.stderr and str(tmp_path / "run") not in done.stderr, done.stderr


def test_train_refuses_cuda_graphs_on_a_cpu_before_reading_any_data(tmp_path):
    missing = tmp_path / "no-such-data"  # read first, this would be the error
    with pytest.raises(ConfigError, match="--cuda-graphs needs a CUDA GPU"):
        train({"model": "fast", "epochs": 1, "device": "cpu", "cuda_graphs": True, "data_dir": str(missing),
               "out": str(tmp_path / "run")}, log=None)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("distributed, compiled, augment, words", [
    (False, True, {}, "give --compile or --cuda-graphs, not both"),
    (True, False, {}, "under torchrun leave it out"),
    (False, False, {"rotate": 10.0, "lowres": 0.25}, "low-resolution blur"),
])
def test_cuda_graphs_are_refused_where_a_recorded_step_would_differ(distributed, compiled, augment, words):
    with pytest.raises(ConfigError, match=words):
        check_graphs(GPU, distributed, compiled, augment)


def test_what_cuda_graphs_can_record_passes_the_check():
    check_graphs(GPU, False, False, {"rotate": 10.0, "shift": 0.1, "scale": 0.1})  # no error


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("name, options", [("fast", {}), ("strided", {"epochs": 4, "precision": "auto"})])
def test_a_graphed_run_trains_like_an_eager_one(tiny_dir, name, options):
    """Same seed, same batches: the replayed steps must learn what the eager ones do (augmentation and dropout draw
    other random numbers in a graph, so `strided` is compared by accuracy only)."""
    data = load_dataset("mnist", tiny_dir)
    runs = []
    for graphs in (False, True):
        torch.manual_seed(0)
        model = create_model(name)
        history = fit(model, data, **{"epochs": 3, "batch_size": 32, "lr": 0.02, "precision": "fp32", **options},
                      device="cuda", cuda_graphs=graphs, log=None)
        runs.append((model, history, evaluate(model, data).accuracy))
    (eager, eager_history, eager_acc), (graphed, graphed_history, graphed_acc) = runs
    assert abs(graphed_acc - eager_acc) <= 0.05 and graphed_acc >= 0.7
    assert [r["precision"] for r in graphed_history.epochs] == [r["precision"] for r in eager_history.epochs]
    if name == "fast":  # no randomness inside the step: the same arithmetic, up to the order of float sums
        for a, b in zip(eager.state_dict().values(), graphed.state_dict().values(), strict=True):
            assert torch.allclose(a.float(), b.float(), rtol=1e-2, atol=1e-2)
        assert graphed_history.epochs[-1]["train_loss"] == pytest.approx(eager_history.epochs[-1]["train_loss"],
                                                                         rel=1e-2)


def test_the_warm_up_leaves_no_trace_and_a_step_that_cannot_be_recorded_is_a_clear_error(monkeypatch):
    """Without a GPU: CUDA's streams are stood in for, and recording fails as it does for an operation CUDA graphs
    cannot hold. The warm-up passes before it have moved BatchNorm's statistics: they are put back."""
    class Stream:
        def wait_stream(self, other):
            pass

    monkeypatch.setattr(torch.cuda, "device", lambda device: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "Stream", Stream)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda *device: Stream())
    monkeypatch.setattr(torch.cuda, "stream", lambda stream: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "CUDAGraph", object)

    def refuse(graph, stream=None):
        raise RuntimeError("operation not permitted when stream is capturing\nCUDA kernel errors might be ...")

    monkeypatch.setattr(torch.cuda, "graph", refuse)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4)).train()
    before = [b.clone() for b in model.buffers()]
    passes = []

    def step(idx):
        passes.append(idx.clone())
        model(torch.randn(8, 3)).square().sum().backward()

    with pytest.raises(ConfigError, match=r"^--cuda-graphs could not record a training step \(operation not "
                                          r"permitted when stream is capturing\); train without --cuda-graphs\.$"):
        StepGraph(step, torch.arange(8), model)
    assert len(passes) == WARM_UP and all(torch.equal(p, torch.arange(8)) for p in passes)
    assert all(torch.equal(a, b) for a, b in zip(before, model.buffers(), strict=True))
    assert all(p.grad is None for p in model.parameters())  # the recording makes the gradients the replays fill
