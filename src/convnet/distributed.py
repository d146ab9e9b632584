"""Several processes, GPUs or machines through `torchrun` and PyTorch DDP.

`torchrun` sets RANK, WORLD_SIZE and LOCAL_RANK; when WORLD_SIZE > 1 training joins the process group (NCCL on
GPUs, gloo on CPUs and on GPUs where PyTorch has no NCCL; MPS is refused), wraps the model in DistributedDataParallel
and gives each rank its own shard of every epoch.
Only rank 0 logs, evaluates and writes files. Without torchrun, everything here is a no-op.
"""
from __future__ import annotations

import os
import re
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn, TypeVar

import torch
import torch.distributed as dist

from convnet.errors import ConfigError, first_line

T = TypeVar("T")


class ReportedElsewhere(ConfigError):
    """An error that every process of the run meets and rank 0 reports: the others stop without a word."""


def everyones(message: str) -> ConfigError:
    """The error for a failure every process learns of together: rank 0's to say, the others' to stop at."""
    return ConfigError(message) if world().is_main else ReportedElsewhere(message)


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.size > 1


def world() -> World:
    """This process's place, from torchrun's environment variables.

    Without WORLD_SIZE > 1 the process is the only one, whatever RANK it inherited: a stray RANK=1 left in a shell
    must not turn a plain run into a silent non-main rank that writes nothing.
    """
    env = os.environ
    names = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
    try:
        rank, size, local_rank = (int(env.get(name, default)) for name, default in zip(names, ("0", "1", "0")))
    except ValueError:
        found = ", ".join(f"{name}={env[name]!r}" for name in names if name in env)
        message = f"torchrun's variables must be whole numbers, got {found}; unset them for a plain run."
        raise ConfigError(message) from None
    if size <= 1:
        return World()
    wrong = (f"RANK={rank} is outside 0..{size - 1} (WORLD_SIZE={size})" if not 0 <= rank < size else
             f"LOCAL_RANK={local_rank} is negative" if local_rank < 0 else None)
    if wrong:
        raise ConfigError(f"{wrong}: start the processes with torchrun, or unset its variables for a plain run.")
    return World(rank, size, local_rank)


JOIN_NOTE_SECONDS = 10.0  # a wait longer than this for the other processes is said (a launch that went wrong)


def init(device: torch.device) -> World:
    """Join the process group once (when launched by torchrun); returns this process's World.

    The joining waits in PyTorch's C++ code for every process, 30 minutes by default, where Python's signal handlers
    never run: Ctrl-C and SIGTERM were ignored all that time (a stray WORLD_SIZE in a shell, a machine that never
    started). So it waits in a thread of its own while this one stays ready for them, and says what it waits for.
    """
    w = world()
    if not w.active or dist.is_initialized():
        return w
    gpu = _own_gpu(device, w)
    failed: list[BaseException] = []

    def join() -> None:
        try:
            # Windows' builds of PyTorch have no NCCL ("Distributed package doesn't have NCCL built in"): gloo
            # exchanges CUDA tensors too, through the host.
            if gpu is None or not dist.is_nccl_available():
                dist.init_process_group("gloo")
            else:  # bound to its GPU: NCCL sets up at once, and barrier() knows which GPU to wait on
                torch.cuda.set_device(gpu)  # the current device is the thread's own
                dist.init_process_group("nccl", device_id=gpu)
        except BaseException as e:  # raised again in the main thread, which the user sees
            failed.append(e)

    joining = threading.Thread(target=join, name="convnet-join", daemon=True)  # left behind on Ctrl-C
    joining.start()
    joining.join(JOIN_NOTE_SECONDS)
    if joining.is_alive():
        where = f"{os.environ.get('MASTER_ADDR', '?')}:{os.environ.get('MASTER_PORT', '?')}"
        print(f"convnet: rank {w.rank} waits for the other {w.size - 1} process(es) of WORLD_SIZE={w.size} at "
              f"{where} (Ctrl-C stops; unset torchrun's variables for a plain run)", file=sys.stderr)
    while joining.is_alive():
        joining.join(0.5)  # short waits: a signal is handled between them
    if failed:
        # A WORLD_SIZE without the rest of torchrun's variables (a stray one in a shell): PyTorch's words name its
        # env:// rendezvous, which the user never chose.
        if unset := re.search(r"environment variable (\w+) expected, but not set", str(failed[0])):
            raise ConfigError(f"WORLD_SIZE={w.size} is set, but {unset[1]} is not: start the processes with "
                              "torchrun, or unset WORLD_SIZE for a plain run.") from None
        raise failed[0]
    return w


def _own_gpu(device: torch.device, w: World) -> torch.device | None:
    """This process's GPU, one per process by LOCAL_RANK, made current; None on CPUs, a ConfigError on MPS. NCCL
    refuses two processes on one GPU ("Duplicate GPU detected"), deep in the first collective: said here, before the
    joining."""
    if device.type == "mps":  # no process group exchanges MPS tensors: gloo's first collective failed on them
        raise ConfigError("under torchrun the processes exchange their tensors through gloo, which takes CPU and CUDA "
                          "tensors, not Apple's MPS ones: add --device cpu, or train on MPS in one process.")
    if device.type != "cuda":
        return None
    count = torch.cuda.device_count()
    if w.local_rank >= count:
        raise ConfigError(f"LOCAL_RANK={w.local_rank}, but this machine has {count} GPU(s): one process per GPU, so "
                          f"--nproc-per-node {count} at most here (or --device cpu).")
    gpu = torch.device("cuda", w.local_rank)
    torch.cuda.set_device(gpu)
    return gpu


def first_on_main(step: Callable[[], T], device: torch.device) -> T | None:
    """Run `step` on rank 0 alone, before the other ranks go on (they may read what it fetched): its result there,
    None on the others; without torchrun, simply its result.

    A failure in it stops every rank at once: rank 0 raises its error, the others a ConfigError that rank 0's message
    explains. Otherwise they would wait for rank 0 in the process group until torchrun killed them.
    """
    w = world()
    if not w.active:
        return step()
    init(device)
    result, failed = None, None
    if w.is_main:
        try:
            result = step()
        except Exception as e:  # every rank must hear of it; it is raised again just below
            failed = e
    if agree(failed is not None, device_for(device, w)):
        raise failed if failed is not None else ReportedElsewhere("the first process could not start the run.")
    return result


def same_options(options: dict, device: torch.device) -> None:
    """Refuse, on every process, a run whose processes were given other options than rank 0's (each machine of a
    multi-machine run is given its own command line): with another --seed they train on overlapping shards, with
    other --epochs the first to finish waits for the others forever, with another --batch-size a collective aborts.
    Rank 0 names the differences."""
    w = world()
    if not w.active:
        return
    init(device)
    everyone: list[dict | None] = [None] * w.size
    dist.all_gather_object(everyone, options)
    first = everyone[0]
    differ = [f"rank {rank} has " + ", ".join(f"{k} {theirs.get(k)!r}" for k in first if theirs.get(k) != first[k])
              for rank, theirs in enumerate(everyone) if theirs != first]
    if differ:
        raise everyones(f"the processes of this run were given different options ({'; '.join(differ)}; rank 0 has "
                        + ", ".join(f"{k} {first[k]!r}" for k in first if any(t.get(k) != first[k] for t in everyone))
                        + "): give every machine the same command line.")


def device_for(device: torch.device, w: World) -> torch.device:
    """One GPU per process: rank-local CUDA device under torchrun."""
    if device.type == "cuda" and w.active:
        return torch.device("cuda", w.local_rank)
    return device


def agree(flag: bool, device: torch.device) -> bool:
    """True on every rank if it is True on rank 0 (e.g. 'the target accuracy is reached, stop')."""
    return _shared(flag, device, lambda t: dist.broadcast(t, src=0))


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank if it is True on any rank (e.g. 'this rank's training diverged')."""
    return _shared(flag, device, lambda t: dist.all_reduce(t, op=dist.ReduceOp.MAX))


def _shared(flag: bool, device: torch.device, collective: Callable[[torch.Tensor], object]) -> bool:
    if not dist.is_initialized():
        return flag
    t = torch.tensor([int(flag)], device=device)
    collective(t)
    return bool(t.item())


def average_buffers(model: torch.nn.Module) -> None:
    """Average floating-point buffers (BatchNorm running statistics) over the ranks, so all hold the same model.

    DDP keeps parameters in step through its gradient all-reduce, but each rank updates BatchNorm's running
    statistics from its own shard.
    """
    if not dist.is_initialized():
        return
    for buffer in model.buffers():
        if buffer.is_floating_point():
            dist.all_reduce(buffer, op=dist.ReduceOp.SUM)
            buffer.div_(dist.get_world_size())


# How gloo and NCCL word a collective whose other end went away: a process killed, crashed or stopped by torchrun.
PEER_GONE = ("connection closed by peer", "connection reset by peer", "remote worker crash", "broken pipe",
             "communicator was aborted")


def peer_gone(error: BaseException) -> bool:
    """Whether `error` is a collective that failed because another process of the run is gone."""
    return isinstance(error, RuntimeError) and any(words in str(error).lower() for words in PEER_GONE)


def failure_reason(error: BaseException) -> str:
    """Why a process stopped, in one line: another process gone, or the error's type and first line."""
    if peer_gone(error):
        return "another process of this run is gone"
    return f"{type(error).__name__}: {first_line(error, '')}"


def finish() -> None:
    """Wait for every rank, then leave the process group (no-op without torchrun)."""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def exit_process(code: int) -> NoReturn:
    """End a torchrun worker at once, skipping the interpreter's teardown.

    Once DistributedDataParallel has been built, the gloo process group and its worker threads outlive
    `destroy_process_group`. A worker thread that drops the last reference to a collective's tensor while the
    interpreter shuts down cannot take the GIL any more, and the process aborts ("terminate called without an active
    exception"): torchrun then reports a finished run as failed. By this point every file is written, so there is
    nothing for the teardown to do.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
