"""torchrun with 2 CPU processes (gloo): both ranks end with the same weights and rank 0 writes a full run folder."""
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from convnet import distributed
from convnet.errors import ConfigError


def launcher(*args) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", *map(str, args)]


def launch_env(cwd: Path) -> dict[str, str]:
    # TMPDIR: torchrun leaves a torchelastic_* folder in the temporary folder at every start; keep it in the test's.
    return {**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": str(cwd)}


def torchrun(*args, cwd):
    return subprocess.run(launcher("--standalone", "--nproc-per-node", 2, *args), capture_output=True, text=True,
                          timeout=600, cwd=cwd, env=launch_env(cwd))


def free_port() -> int:
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        return free.getsockname()[1]


@pytest.mark.parametrize("ema", [0.0, 0.9])  # with a moving average of the weights too, BatchNorm's statistics
def test_two_ranks_hold_identical_weights(tiny_dir, tmp_path, ema):
    done = torchrun(Path(__file__).with_name("ddp_worker.py"), tiny_dir, tmp_path, ema, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    r0, r1 = load_file(str(tmp_path / "rank0.safetensors")), load_file(str(tmp_path / "rank1.safetensors"))
    # Rank 0 alone calibrates: the typicality is its own, the weights everyone's.
    assert {"typical_centres", "typical_whiten"} <= r0.keys() and not any(k.startswith("typical_") for k in r1)
    r0 = {k: v for k, v in r0.items() if not k.startswith("typical_")}
    assert r0.keys() == r1.keys() and all(torch.equal(r0[k], r1[k]) for k in r0)
    fresh = {k: v for k, v in r0.items() if "running" not in k}
    assert any(v.abs().sum() > 0 for v in fresh.values())
    run = tmp_path / "run"
    assert {p.name for p in run.iterdir()} == {"model.safetensors", "model.json", "metrics.json", "history.csv",
                                               "config.json"}
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["epochs"] == 2 and 0 <= metrics["test_accuracy"] <= 1
    assert ("ema" in metrics) == bool(ema)
    saved = load_file(str(run / "model.safetensors"))
    assert all(torch.equal(saved[k], r0[k]) for k in r0) and "typical_whiten" in saved
    assert done.stderr.count("epoch 2/2") == 1  # only rank 0 logs


def test_cli_under_torchrun(tiny_dir, tmp_path):
    done = torchrun("-m", "convnet", "train", "--model", "fast", "--data-dir", tiny_dir, "--epochs", "1",
                    "--batch-size", "16", "--out", tmp_path / "cli-run", "--device", "cpu", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("test accuracy:") == 1
    assert json.loads((tmp_path / "cli-run" / "metrics.json").read_text())["world_size"] == 2


def test_two_machines_meet_through_the_documented_rendezvous(tiny_dir, tmp_path):
    # docs/training.md's command for two machines, as two launchers of one process each on this one: the c10d
    # rendezvous gives out the ranks in whatever order the launchers arrive, and the one with rank 0 writes the run.
    rendezvous = ("--nnodes", 2, "--nproc-per-node", 1, "--rdzv-backend", "c10d", "--rdzv-endpoint",
                  f"127.0.0.1:{free_port()}", "--rdzv-id", "two-machines")
    train = ("-m", "convnet", "train", "--model", "fast", "--data-dir", tiny_dir, "--epochs", "1", "--batch-size", "16",
             "--out", tmp_path / "run", "--device", "cpu")
    machines = [subprocess.Popen(launcher(*rendezvous, *train), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True, cwd=tmp_path, env=launch_env(tmp_path)) for _ in range(2)]
    try:
        outputs = [machine.communicate(timeout=600) for machine in machines]
    finally:  # a timeout leaves both launchers running: communicate does not end them
        for machine in machines:
            machine.kill()
    assert [machine.returncode for machine in machines] == [0, 0], [err[-3000:] for _, err in outputs]
    assert sorted(out.count("test accuracy:") for out, _ in outputs) == [0, 1]  # one rank 0, on either machine
    assert sum(err.count("epoch 1/1") for _, err in outputs) == 1
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["world_size"] == 2


def two_machines(tmp_path: Path, *commands: tuple, cwds: list[Path]) -> list[tuple[int, str, str]]:
    """Two launchers of one process each, as on two machines (the c10d rendezvous of docs/training.md), each with
    its own command line and folder: (exit status, stdout, stderr) of each."""
    rendezvous = ("--nnodes", 2, "--nproc-per-node", 1, "--rdzv-backend", "c10d", "--rdzv-endpoint",
                  f"127.0.0.1:{free_port()}", "--rdzv-id", "two-machines")
    machines = [subprocess.Popen(launcher(*rendezvous, "-m", "convnet", "train", *command), stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, cwd=cwd, env=launch_env(tmp_path))
                for command, cwd in zip(commands, cwds)]
    try:
        outputs = [machine.communicate(timeout=300) for machine in machines]
    finally:  # a timeout leaves both launchers running: communicate does not end them
        for machine in machines:
            machine.kill()
    return [(machine.returncode, out, err) for machine, (out, err) in zip(machines, outputs)]


def test_machines_given_different_options_are_refused_before_any_work(tiny_dir, tmp_path):
    # Other --epochs: the first to finish waited for the other forever; another --seed trained on overlapping shards.
    train = ("--model", "fast", "--data-dir", tiny_dir, "--out", tmp_path / "run", "--device", "cpu")
    done = two_machines(tmp_path, (*train, "--epochs", "1"), (*train, "--epochs", "2", "--seed", "7"),
                        cwds=[tmp_path, tmp_path])
    assert all(code != 0 for code, _, _ in done), [err[-3000:] for *_, err in done]
    said = "".join(err for *_, err in done)
    assert said.count("convnet: error: the processes of this run were given different options (rank 1 has") == 1, said
    assert "give every machine the same command line" in said and "epochs" in said and "seed" in said
    # torchrun reports a failed worker with a traceback of its own; the workers must not add theirs.
    assert "convnet/" not in said and not (tmp_path / "run").exists()


def test_a_machine_without_the_data_says_so(tiny_dir, tmp_path):
    # Only that machine's process meets the error: whichever rank it is, the cause is said there, not lost.
    (tmp_path / "with").mkdir()
    (tmp_path / "without").mkdir()
    (tmp_path / "with" / "data").symlink_to(tiny_dir)
    train = ("--model", "fast", "--data-dir", "data", "--epochs", "1", "--out", tmp_path / "run", "--device", "cpu")
    done = two_machines(tmp_path, train, train, cwds=[tmp_path / "with", tmp_path / "without"])
    assert all(code != 0 for code, _, _ in done), [err[-3000:] for *_, err in done]
    without = done[1][2]
    assert "error: data: not a folder" in without, without[-3000:]


@pytest.mark.parametrize("args, words", [(["--lr", "1e30"], "convnet: error: training diverged in epoch 1"),
                                         (["--bogus", "1"], "convnet train: error: unrecognized arguments"),
                                         # every rank meets it; rank 1 left first and took rank 0's line with it
                                         (["--epochs", "-1"], "convnet: error: epochs must be at least 1")])
def test_an_error_under_torchrun_is_one_clear_line(tiny_dir, tmp_path, args, words):
    done = torchrun("-m", "convnet", "train", "--model", "fast", "--data-dir", tiny_dir, "--epochs", "2", *args,
                    "--out", tmp_path / "run", "--device", "cpu", cwd=tmp_path)
    assert done.returncode != 0 and not (tmp_path / "run").exists()
    assert done.stderr.count(words) == 1, done.stderr[-3000:]
    # torchrun itself reports a failed worker with its own traceback; the workers must not add theirs.
    assert "[rank" not in done.stderr and "convnet/train.py" not in done.stderr


def test_an_error_only_rank_0_meets_stops_every_rank_at_once(tiny_dir, tmp_path):
    # Only rank 0 claims the run folder: the others used to wait for it in the process group until torchrun, 30 s
    # later, killed them.
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "model.safetensors").write_bytes(b"mine")
    started = time.monotonic()
    done = torchrun("-m", "convnet", "train", "--model", "fast", "--data-dir", tiny_dir, "--epochs", "1",
                    "--out", taken, "--device", "cpu", cwd=tmp_path)
    assert done.returncode != 0 and time.monotonic() - started < 25, done.stderr[-3000:]
    assert done.stderr.count("already holds model.safetensors") == 1 and "forcefully" not in done.stderr
    assert (taken / "model.safetensors").read_bytes() == b"mine"


def test_a_killed_process_leaves_one_clear_line_and_the_last_epoch(tiny_dir, tmp_path):
    run = tmp_path / "run"
    # torchrun stops the other processes once it sees one die: late enough here for rank 0 to see the loss first.
    done = torchrun("--monitor-interval", 10, Path(__file__).with_name("ddp_faulty_worker.py"), "kill", "--model",
                    "fast", "--data-dir", tiny_dir, "--epochs", "3", "--batch-size", "16", "--out", run, "--device",
                    "cpu", cwd=tmp_path)
    assert done.returncode != 0
    assert done.stderr.count("convnet: rank 0 stopped: another process of this run is gone") == 1, done.stderr[-3000:]
    assert "interrupted" not in done.stderr and "Connection" not in done.stderr.split("ChildFailedError")[0]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs"] == len(metrics["history"]) == 1 and metrics["interrupted"]
    assert metrics["error"] == "another process of this run is gone"
    assert json.loads((run / "model.json").read_text())["metrics"]["epochs"] == 1


def test_a_divergence_only_another_rank_sees_stops_every_rank(tiny_dir, tmp_path):
    run = tmp_path / "run"
    done = torchrun(Path(__file__).with_name("ddp_faulty_worker.py"), "nan", "--model", "fast", "--data-dir", tiny_dir,
                    "--epochs", "3", "--batch-size", "16", "--out", run, "--device", "cpu", cwd=tmp_path)
    assert done.returncode != 0
    words = "convnet: error: training diverged in epoch 2 (on another process)"
    assert done.stderr.count(words) == 1, done.stderr[-3000:]
    assert json.loads((run / "model.json").read_text())["metrics"]["epochs"] == 1


def test_rank_0_alone_fetches_the_data(tmp_path, monkeypatch):
    monkeypatch.setenv("CONVNET_HOME", str(tmp_path / "home"))
    worker = tmp_path / "fetching.py"
    worker.write_text(
        "import sys\n"
        "from convnet import data, distributed\n"
        "from convnet.train import train\n"
        "def fetch(name, log=print, force=False):\n"
        "    print('fetching on rank', distributed.world().rank, flush=True)\n"
        "    raise data.DataError('no source answered')\n"
        "data.fetch = fetch\n"
        "train({'model': 'fast', 'epochs': 1, 'device': 'cpu', 'out': sys.argv[1]}, log=None)\n")
    done = torchrun(worker, tmp_path / "run", cwd=tmp_path)
    assert done.returncode != 0 and done.stdout.count("fetching on rank") == 1, done.stdout + done.stderr[-2000:]
    assert "fetching on rank 0" in done.stdout and not (tmp_path / "run").exists()


@pytest.mark.parametrize("env, expected", [({}, (0, 1, 0)), ({"RANK": "1"}, (0, 1, 0)),
                                           ({"RANK": "1", "WORLD_SIZE": "1", "LOCAL_RANK": "1"}, (0, 1, 0)),
                                           ({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}, (1, 2, 1))])
def test_only_a_world_of_several_makes_a_rank_other_than_0(monkeypatch, env, expected):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    w = distributed.world()
    assert (w.rank, w.size, w.local_rank) == expected


def test_one_gpu_a_process_by_local_rank(monkeypatch):
    """Two processes on one GPU failed deep in NCCL's first collective ("Duplicate GPU detected"); a LOCAL_RANK past
    the GPUs, with CUDA's "invalid device ordinal"."""
    chosen = []
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    assert distributed._own_gpu(torch.device("cuda"), distributed.World(3, 4, 1)) == torch.device("cuda", 1)
    assert chosen == [torch.device("cuda", 1)]
    with pytest.raises(ConfigError, match=r"LOCAL_RANK=2, but this machine has 2 GPU\(s\): .* --nproc-per-node 2 at "
                                          r"most here \(or --device cpu\)"):
        distributed._own_gpu(torch.device("cuda"), distributed.World(2, 4, 2))
    assert distributed._own_gpu(torch.device("cpu"), distributed.World(2, 4, 2)) is None and len(chosen) == 1


def test_mps_under_torchrun_is_a_clear_error(monkeypatch, tmp_path):
    """gloo takes CPU and CUDA tensors: on a Mac (where auto picks MPS) the first collective failed on MPS ones."""
    joined = []
    monkeypatch.setattr(distributed.dist, "init_process_group", lambda *args, **kwargs: joined.append(args))
    for name, value in {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0"}.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match="gloo, which takes CPU and CUDA tensors, not Apple's MPS ones: add "
                                          "--device cpu"):
        distributed.init(torch.device("mps"))
    assert not joined


def test_gpus_join_through_gloo_where_pytorch_has_no_nccl(monkeypatch):
    """Windows' PyTorch has no NCCL: asked for, it failed with "Distributed package doesn't have NCCL built in"."""
    joined = []
    monkeypatch.setattr(distributed.dist, "init_process_group", lambda *args, **kwargs: joined.append(args))
    monkeypatch.setattr(distributed.dist, "is_nccl_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: None)
    for name, value in {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}.items():
        monkeypatch.setenv(name, value)
    assert distributed.init(torch.device("cuda")).rank == 1 and joined == [("gloo",)]


@pytest.mark.parametrize("env, words", [({"RANK": "abc"}, "must be whole numbers, got RANK='abc'"),
                                        ({"RANK": "2", "WORLD_SIZE": "2"}, "RANK=2 is outside 0..1"),
                                        ({"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "-1"}, "LOCAL_RANK=-1"),
                                        # PyTorch's own words were of its "env:// rendezvous"
                                        ({"WORLD_SIZE": "2"}, "convnet: error: WORLD_SIZE=2 is set, but RANK is not: "
                                                              "start the processes with torchrun, or unset")])
def test_broken_torchrun_variables_are_a_clear_error(tmp_path, env, words):
    clean = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR")}
    done = subprocess.run([sys.executable, "-m", "convnet", "train", "--epochs", "1", "--out", tmp_path / "run"],
                          capture_output=True, text=True, timeout=300, env={**clean, **env})
    assert done.returncode == 1 and words in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "run").exists()


def test_a_stray_rank_does_not_silence_a_plain_run(tiny_dir, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "LOCAL_RANK")}
    done = subprocess.run([sys.executable, "-m", "convnet", "train", "--model", "fast", "--data-dir", tiny_dir,
                           "--epochs", "1", "--batch-size", "16", "--out", tmp_path / "run", "--device", "cpu"],
                          capture_output=True, text=True, timeout=300, env={**env, "RANK": "1"})
    assert done.returncode == 0 and "test accuracy:" in done.stdout, done.stderr[-2000:]
    assert (tmp_path / "run" / "metrics.json").exists()
    usage = subprocess.run([sys.executable, "-m", "convnet", "predict"], capture_output=True, text=True,
                           timeout=300, env={**env, "RANK": "1"})
    assert usage.returncode == 2 and "the following arguments are required: PATH" in usage.stderr


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_a_rank_waiting_for_processes_that_never_come_says_so_and_stops_on_a_signal(tiny_dir, tmp_path, stop):
    """A stray WORLD_SIZE in a shell: the process waited 30 minutes inside PyTorch's joining, deaf to Ctrl-C and
    SIGTERM, saying nothing."""
    port = free_port()
    env = {**os.environ, "WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": str(port)}
    run = subprocess.Popen([sys.executable, "-m", "convnet", "train", "--model", "fast", "--data-dir", tiny_dir,
                            "--out", tmp_path / "run", "--device", "cpu"], stderr=subprocess.PIPE, env=env)
    said = f"rank 0 waits for the other 1 process(es) of WORLD_SIZE=2 at 127.0.0.1:{port}".encode()
    err, deadline = b"", time.monotonic() + 120
    try:
        while said not in err:  # read as it comes, never waiting past the deadline for more
            assert time.monotonic() < deadline and run.poll() is None, f"not said in 2 minutes: {err!r}"
            if select.select([run.stderr], [], [], 1)[0]:
                err += os.read(run.stderr.fileno(), 4096)
        run.send_signal(stop)
        assert run.wait(timeout=60) == 130
        assert b"convnet: interrupted" in err + run.stderr.read()
    finally:
        run.kill()
        run.stderr.close()
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("args, words", [(["train", "--help"], "usage: convnet train"), (["--version"], "convnet ")])
def test_help_and_version_print_once_under_torchrun(tmp_path, args, words):
    done = torchrun("-m", "convnet", *args, cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.count(words) == 1, done.stdout


@pytest.mark.parametrize("error, gone", [
    (RuntimeError("[gloo/transport/tcp/pair.cc:553] Connection closed by peer [127.0.0.1]:47509"), True),
    (RuntimeError("[gloo/transport/tcp/pair.cc:598] Connection reset by peer"), True),
    (RuntimeError("shape mismatch"), False),
    (OSError("Connection reset by peer"), False),  # a file system's or a download's, not a collective's
])
def test_a_collective_that_lost_its_peer_is_told_apart(error, gone):
    assert distributed.peer_gone(error) is gone
