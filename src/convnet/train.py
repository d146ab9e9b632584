"""Training: `fit(model, data, …)` is the plain loop; `train(config)` is a whole run that writes a run folder.

Speed on a CPU comes from doing no per-sample work: the data set is normalised once into one channels-last float
tensor on the training device, batches are index gathers, augmentation is two tensor ops per batch, and the loss is
only read back to the host when the progress bar redraws.
"""
from __future__ import annotations

import csv
import dataclasses
import inspect
import io
import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from convnet import distributed
from convnet.augment import STANDARD, augment_batch
from convnet.average import WeightAverage
from convnet.calibrate import (MAX_FEATURES, TEMPERATURES, TYPICAL_IMAGES, attach_typicality, detach_typicality,
                               expected_calibration_error, fit_temperature, fit_typicality,
                               temperature_for_confidence)
from convnet.checkpoint import (RUN_FILES, RUN_RECORDS, claim_folder, folders_to_make, non_finite, remove_empty,
                                write_model)
from convnet.config import TrainConfig
from convnet.data import Dataset, load_dataset, to_tensor
from convnet.data.cache import atomic_write, atomic_write_json
from convnet.device import exact_fp32, keep_freed_memory, resolve_device, use_bf16
from convnet.errors import ConfigError, DataError, first_line
from convnet.evaluate import check_fits, check_kinds, evaluate, evaluate_tensors, logits_of
from convnet.graphs import StepGraph, check_graphs
from convnet.interrupt import ctrl_c_held
from convnet.models import Network, create_model, get_spec
from convnet.models.registry import MAX_SIDE, blank_pass
from convnet.models.deskew import deskew_training_images
from convnet.progress import Log, progress_bar, stderr_log


@dataclass
class History:
    """Per-epoch records (train/val loss and accuracy, seconds) and the training wall time."""

    epochs: list[dict] = field(default_factory=list)
    train_seconds: float = 0.0
    interrupted: bool = False
    target_reached: bool = False
    calibration: dict | None = None  # the softmax temperature fitted on the held-out split, when there is one
    ema: dict | None = None  # with --ema: its decay, and the held-out accuracy of the weights and of their average

    @property
    def history(self) -> dict[str, list]:
        """Each loss and accuracy, epoch by epoch, as Keras' `History.history` has them (`loss`, `accuracy`,
        `val_loss`, `val_accuracy`, `test_accuracy`); `epochs` has the rest too (seconds, precision, ...)."""
        keras = {"train_loss": "loss", "train_accuracy": "accuracy"}
        keys = dict.fromkeys(k for row in self.epochs for k in row if k.endswith(("loss", "accuracy")))
        return {keras.get(k, k): [row.get(k) for row in self.epochs] for k in keys}

    def to_csv(self) -> str:
        keys = list(dict.fromkeys(k for row in self.epochs for k in row))
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.epochs)
        return buf.getvalue()


def split_indices(n: int, val_split: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded random hold-out: the same seed always holds out the same images."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_val = int(round(n * val_split))
    return perm[n_val:], perm[:n_val]


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = model.parameters()
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, nesterov=True, weight_decay=cfg.weight_decay)
    kind = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    # The fused kernel updates all parameters in one pass: less per-step overhead for small models.
    return kind(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)


def make_schedule(opt: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int
                  ) -> torch.optim.lr_scheduler.LRScheduler | None:
    # A one-cycle schedule over a handful of steps means nothing, and PyTorch's divides by zero for some of them.
    if cfg.schedule == "constant" or total_steps < 8:
        return None
    return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=total_steps, pct_start=0.25)


def fit(
    model: Network,
    /,  # so that model="..." among the options gets fit's own answer, not Python's "multiple values"
    data: Dataset,
    config: TrainConfig | None = None,
    log: Log | None = stderr_log,
    on_epoch_end: Callable[[Network, History], None] | None = None,
    **overrides,
) -> History:
    """Train `model` on `data` (Keras' `fit`): options as a `TrainConfig` and/or keywords (epochs=…, lr=…).

    `config` may also be a dict of options. Whatever the options leave out comes from the recipe of `model`'s own
    architecture (a TrainConfig's `model` is what `train` builds). `log` takes each message (None: say nothing). `fit`
    writes no files and trains on `data`: `out`, `overwrite`, `dataset` and `data_dir` belong to `train`.
    `on_epoch_end(model, history)` runs after each epoch (the CLI saves a checkpoint there). Ctrl-C stops training
    and returns the history of the epochs completed, marked `interrupted` (the temperature is then not fitted).
    After a complete run, the softmax temperature is fitted on the held-out split (`model.temperature`,
    `history.calibration`), and the typicality on up to 30,000 training images (`model.typicality`,
    `convnet.calibrate.fit_typicality`). Under torchrun, every rank calls this with the same arguments; each trains on
    its shard and only rank 0 evaluates, calibrates, logs and calls `on_epoch_end`.
    """
    cfg, log = _fit_config(model, data, config, log, on_epoch_end, overrides)
    requested = resolve_device(cfg.device)
    w = distributed.init(requested)
    dev = distributed.device_for(requested, w)
    if not w.is_main:
        log, on_epoch_end = (lambda message: None), None
    check_fits(model, data)
    before = _Calibration.of(model)
    try:  # a refusal before the first step (a batch larger than the data, say) leaves the model as it was
        model.mean, model.std = data.normalization()
        model.temperature = 1.0  # one fitted before (a model trained further) belongs to other weights
        detach_typicality(model)  # and so does its typicality
        model.classes = list(data.classes)
        model.to(dev, memory_format=torch.channels_last)
        if dev.type == "cpu":
            keep_freed_memory()
        (x, y), (x_val, y_val), test = _tensors(model, data, cfg, dev)
        loop = _make_loop(model, cfg, w, dev, len(x), log)
    except BaseException:
        before.restore(model)
        raise
    torch.manual_seed(cfg.seed + w.rank)  # augmentation differs per rank; batch order has its own generator
    history = History()

    for epoch in range(1, cfg.epochs + 1):
        # Ctrl-C anywhere in here, evaluations and on_epoch_end included, ends the run with the epochs recorded so far.
        try:
            row = loop.epoch(x, y, epoch)
            _check_sound(model, row, cfg, epoch, dev)
            distributed.average_buffers(model)
            if w.is_main and len(x_val):
                val = evaluate_tensors(model, x_val, y_val, model.classes)
                row.update(val_loss=round(val.loss, 6), val_accuracy=round(val.accuracy, 6))
            if w.is_main and test is not None:
                row["test_accuracy"] = round(evaluate_tensors(model, *test, model.classes).accuracy, 6)
            history.train_seconds += row["seconds"]
            history.epochs.append(row)
            log(_epoch_line(row, cfg))
            if on_epoch_end:
                on_epoch_end(model, history)
            if _stop_at_target(history, cfg, dev, log):
                break
        except KeyboardInterrupt:
            history.interrupted = True
            done = len(history.epochs)
            log(f"interrupted {'after' if done == epoch else 'during'} epoch {epoch}: stopping"
                + ("; the last completed epoch's checkpoint is kept" if done else ""))
            break
        except Exception as e:
            if not loop.stepped:  # --compile without a compiler, a CUDA graph that cannot be recorded: as it was
                before.restore(model)
            if isinstance(e, torch._dynamo.exc.BackendCompilerFailed):  # --compile's first step: no C++ compiler
                raise ConfigError(f"--compile failed ({first_line(e)}); train without --compile.") from None
            raise
    model.eval()
    if history.epochs and not history.interrupted:  # Ctrl-C during its work is its own to handle
        _finish(model, loop.ema, (x_val, y_val), lambda: _fit_typicality(model, data, cfg.seed, dev, log), history,
                log)
    # Freeing the fits' tensors, the data's and the optimiser's state takes a moment (20 ms for MNIST), and Python
    # raises a Ctrl-C that came meanwhile as the next function starts: it escaped from a whole run as fit returned,
    # and `train` lost the fitted temperature. Here it is held, or caught as the hold begins.
    try:
        with ctrl_c_held() as late:
            del x, y, x_val, y_val, test, loop
    except KeyboardInterrupt:
        late = [True]
    if late:
        log("Ctrl-C came as the training ended: too late to stop it")
    return history


@dataclass
class _Calibration:
    """What `fit` sets on a model before its first step: its scaling, classes, temperature, typicality and device."""

    mean: object
    std: object
    temperature: float
    classes: list[str]
    typicality: tuple[torch.Tensor, torch.Tensor, dict] | None
    device: torch.device | None

    @classmethod
    def of(cls, model: Network) -> _Calibration:
        typical = ((model.typical_centres, model.typical_whiten, model.typicality)
                   if model.typicality is not None and hasattr(model, "typical_whiten") else None)
        device = next((p.device for p in model.parameters()), None)
        return cls(model.mean, model.std, model.temperature, model.classes, typical, device)

    def restore(self, model: Network) -> None:
        if self.device is not None:
            model.to(self.device)
        model.mean, model.std, model.temperature, model.classes = self.mean, self.std, self.temperature, self.classes
        detach_typicality(model)
        if self.typicality is not None:
            attach_typicality(model, *self.typicality)


def _fit_config(model: Network, data: Dataset, config: TrainConfig | dict | None, log: Log | None,
                on_epoch_end: Callable | None, overrides: dict) -> tuple[TrainConfig, Log]:
    """fit()'s arguments checked, and its options resolved: the keywords over `config`, the recipe of `model`'s own
    architecture for what both leave out."""
    # First: fit(model, x_train, y_train), Keras' way, is a mistake about the data, not about the options.
    check_kinds(model, data, (Network,))  # an ensemble is put together from trained models, never trained itself
    if isinstance(config, dict):
        config, overrides = None, {**config, **overrides}
    config, log = _config(config), _logger(log)
    if on_epoch_end is not None and not callable(on_epoch_end):
        raise ConfigError(f"on_epoch_end must be a function (model, history), not {on_epoch_end!r}.")
    named = overrides.get("model", config.model if config else model.arch)
    if named != model.arch and ("model" in overrides or named != TrainConfig.model):  # not TrainConfig's default
        raise ConfigError(f"fit() trains the network it is given, a {model.arch!r} one, not model={named!r}: "
                          "create_model(name) makes another.")
    _check_fit_options(overrides)  # a TrainConfig may hold them: train() passes its own
    options = {**(dataclasses.asdict(config) if config else {}), **overrides}
    # A TrainConfig's `model` (by default "fast") names what train() builds, and would put another network's recipe
    # on this one.
    return TrainConfig.from_dict({**options, "model": model.arch}).resolved(), log


Tensors = tuple[torch.Tensor, torch.Tensor]  # images (normalised, channels-last) and labels on the training device


def _tensors(model: Network, data: Dataset, cfg: TrainConfig, dev: torch.device) -> tuple[Tensors, Tensors,
                                                                                          Tensors | None]:
    """The training images (deskewed for a model that deskews), the held-out ones, and the test images when a
    target accuracy is to be checked after each epoch (else None)."""
    x_all = to_tensor(data.train_x, model.mean, model.std, dev)
    y_all = torch.from_numpy(data.train_y).to(dev)
    train_idx, val_idx = (i.to(dev) for i in split_indices(len(x_all), cfg.val_split, cfg.seed))
    train = deskew_training_images(model, x_all[train_idx]), y_all[train_idx]  # the held-out images stay raw
    test = None
    if cfg.target_accuracy is not None:
        if not len(data.test_x):  # found now, not after the first epoch deep inside torch
            raise DataError(f"the test split of {data.name} holds no images: no test accuracy to stop at.")
        test = to_tensor(data.test_x, model.mean, model.std, dev), torch.from_numpy(data.test_y).to(dev)
    return train, (x_all[val_idx], y_all[val_idx]), test


def _normalises_single_values(model: Network) -> bool:
    """Whether a BatchNorm of the network sees one value a channel in one image (features, or a 1×1 map of small
    images): BatchNorm cannot train on a batch of one image there."""
    shapes: list[torch.Size] = []
    hooks = [m.register_forward_pre_hook(lambda _, inputs: shapes.append(inputs[0].shape))
             for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    blank_pass(model, hooks)
    return any(math.prod(shape[2:]) == 1 for shape in shapes)


def _make_loop(model: Network, cfg: TrainConfig, w: distributed.World, dev: torch.device, n: int, log: Log) -> _Loop:
    """The training steps over `n` images, checked for sense first."""
    steps = n // (cfg.batch_size * w.size)
    if steps == 0:
        raise ConfigError(f"{n} training image(s) left after holding out {_share(cfg.val_split)}: fewer than one "
                          f"batch of {cfg.batch_size} × {w.size} process(es); lower --batch-size or --val-split.")
    if cfg.batch_size == 1 and _normalises_single_values(model):
        height, width = model.input_size
        raise ConfigError(f"--batch-size 1: the {model.arch!r} network normalises its features over each batch "
                          f"(a BatchNorm that sees one value a channel of a {height}×{width} image), "
                          "which takes at least 2 images.")
    if cfg.cuda_graphs:
        check_graphs(dev, w.active, cfg.compile, augmentation(cfg))
    loop = _Loop(cfg, _wrap(model, cfg, w, dev), make_optimizer(model, cfg), w, steps, -model.mean / model.std)
    loop.sched = make_schedule(loop.opt, cfg, cfg.epochs * steps)
    loop.ema = WeightAverage(model, cfg.ema) if cfg.ema else None
    loop.log = log
    if loop.sched is None and cfg.schedule != "constant":
        log(f"{cfg.epochs * steps} steps in all: too few for a {cfg.schedule} schedule; the learning rate stays "
            f"{cfg.lr:g}")
    return loop


def _check_sound(model: Network, row: dict, cfg: TrainConfig, epoch: int, dev: torch.device) -> None:
    """Stop every process with a clear error if an epoch left a non-finite loss or weights on any of them."""
    # The loss was measured before each step: the epoch's last step can still have broken the weights.
    broken = None if math.isfinite(row["train_loss"]) else f"the loss became {row['train_loss']}"
    if broken is None and non_finite(model) is not None:
        broken = "the weights became infinite or NaN"
    if distributed.any_rank(broken is not None, dev):
        # Every later step would only spread NaNs; the last sound epoch's checkpoint stays in the run folder.
        raise distributed.everyones(f"training diverged in epoch {epoch} ({broken or 'on another process'}): lower "
                                    f"the learning rate (--lr, now {cfg.lr:g}) or the weight decay (--weight-decay, "
                                    f"now {cfg.weight_decay:g}).")


def _stop_at_target(history: History, cfg: TrainConfig, dev: torch.device, log: Log) -> bool:
    """Whether the last epoch reached the target test accuracy (then marked in `history`); says so either way."""
    if cfg.target_accuracy is None:
        return False
    epoch = len(history.epochs)
    # Rank 0 alone evaluates, so the ranks agree on stopping.
    if distributed.agree(history.epochs[-1].get("test_accuracy", 0) >= cfg.target_accuracy, dev):
        history.target_reached = True
        log(f"target test accuracy {cfg.target_accuracy:.2%} reached after epoch {epoch}")
        return True
    if epoch == cfg.epochs:
        best = max(r.get("test_accuracy", 0) for r in history.epochs)
        log(f"target test accuracy {cfg.target_accuracy:.2%} not reached in {epoch} epoch{'s' * (epoch != 1)} "
            f"(best {best:.2%})")
    return False


def _finish(model: Network, ema: WeightAverage | None, val: Tensors, fit_typical: Callable[[], None],
            history: History, log: Log) -> None:
    """After the last epoch: the moving average of the weights takes their place, the temperature is fitted on the
    held-out images and the typicality on a sample of the training images. Ctrl-C meanwhile leaves the model as the
    last epoch did, and the history interrupted."""
    (x_val, y_val), before, main = val, model.temperature, distributed.world().is_main
    try:
        if ema is not None:
            ema.use()
            distributed.average_buffers(model)  # each process averaged its own BatchNorm statistics
        # One pass over the held-out images serves both the average's score and the temperature fit.
        held_out = logits_of(model, x_val) if main and len(x_val) else None
        if ema is not None:
            history.ema = _average_record(ema, held_out, y_val, history.epochs[-1], log)
        if held_out is not None:
            history.calibration = _calibrate(model, held_out, y_val, log)
        elif main:
            log("no images held out (--val-split): the temperature is not fitted, and confidences are the network's "
                "own, not calibrated")
        if main:
            fit_typical()
    except KeyboardInterrupt:  # the model goes back to what the last epoch left, like its checkpoint
        if ema is not None:
            ema.restore()
        detach_typicality(model)
        model.temperature, history.interrupted, history.ema, history.calibration = before, True, None, None
        log("interrupted while the weights were averaged or the temperature or typicality fitted: stopping; the last "
            "epoch's checkpoint is kept")


def _check_fit_options(options: dict) -> None:
    """Options given to fit() that belong to train() are refused, not ignored."""
    if given := [n for n in ("out", "overwrite") if n in options]:
        raise ConfigError(f"fit() writes no files, so it takes no {' or '.join(given)}: use train(TrainConfig(...)) "
                          "for a run folder, or save_model(model, folder) after fit().")
    if given := [n for n in ("dataset", "data_dir") if n in options]:
        raise ConfigError(f"fit() trains on the Dataset it is given, so it takes no {' or '.join(given)}: pass "
                          "load_dataset(...) as its data, or use train(TrainConfig(...)).")


def _average_record(ema: WeightAverage, logits: torch.Tensor | None, y_val: torch.Tensor, last: dict,
                    log: Log) -> dict:
    """Say how the moving average, now the trained model, and the last weights (scored after the `last` epoch) do
    on the held-out images, given the average's `logits` there (None: no held-out images on this process)."""
    record: dict = {"decay": ema.decay, "steps": ema.steps}
    message = f"moving average of the weights (decay {ema.decay:g}, over {ema.steps:,} steps) kept"
    if logits is not None:
        record["val_accuracy_weights"] = last["val_accuracy"]
        record["val_accuracy_average"] = round((logits.argmax(1) == y_val).float().mean().item(), 6)
        message += (f": held-out accuracy {record['val_accuracy_average']:.2%}, against "
                    f"{record['val_accuracy_weights']:.2%} for the last weights")
    log(message)
    return record


def _config(config: TrainConfig | dict | None) -> TrainConfig | None:
    """`config` as a TrainConfig: a dict of options is turned into one; anything else is a clear error."""
    if isinstance(config, dict):
        return TrainConfig.from_dict(config)
    if config is not None and not isinstance(config, TrainConfig):
        raise ConfigError(f"training options come as TrainConfig(...) or a dict of options, not {config!r}: e.g. "
                          "TrainConfig(model='fast', epochs=1).")
    return config


def _logger(log: Log | None) -> Log:
    """`log`, checked before any work: None says nothing."""
    if log is None:
        return lambda message: None
    if not callable(log):
        raise ConfigError(f"log must be a function that takes each message, or None for silence; not {log!r}.")
    return log


def _calibrate(model: Network, logits: torch.Tensor, y_val: torch.Tensor, log: Log) -> dict:
    """Fit the softmax temperature to the model's `logits` on the held-out images, so that confidences match
    accuracies; where it misses none of them, set it to the confidence a flawless hold-out of that size supports."""
    n = len(y_val)
    if bool((logits.argmax(1) == y_val).all()):
        # Without a single mistake the likelihood only grows as T shrinks: a fit would claim certainty. Left at T = 1,
        # a network trained with label smoothing answers about 90 % sure while it is right 99.7 % of the time. So the
        # mean confidence is set to the rule of succession's estimate of the accuracy: (n + 1) / (n + 2).
        model.temperature = temperature_for_confidence(logits, (n + 1) / (n + 2))
        rule = f", no mistakes: mean confidence set to {n + 1}/{n + 2}"
        how = (f"set so that the model's mean confidence on the {n} held-out images, all classified correctly, is "
               f"{n + 1}/{n + 2}: without a mistake there is nothing to fit it on (hold out more with --val-split)")
    else:
        model.temperature = fit_temperature(logits, y_val)
        rule, how = "", "fitted on the validation split"
    record = {"temperature": model.temperature, "fitted_on": f"validation split ({n} images{rule})",
              "val_ece_before": expected_calibration_error(logits.softmax(1), y_val),
              "val_ece_after": expected_calibration_error((logits / model.temperature).softmax(1), y_val)}
    bound = (", at the bound of its fit: the network's confidences are far off, and may stay so" if
             model.temperature in TEMPERATURES else "")
    log(f"temperature {model.temperature:.3f} {how}{bound}")  # last: a Ctrl-C drops it all
    return record


def _fit_typicality(model: Network, data: Dataset, seed: int, dev: torch.device, log: Log) -> None:
    """Fit how far an input's features may lie from the training images' before `predict` calls it unlike them, on
    up to TYPICAL_IMAGES training images (held-out ones too), a seeded choice."""
    pick = torch.randperm(len(data.train_x), generator=torch.Generator().manual_seed(seed))[:TYPICAL_IMAGES].numpy()
    pick.sort()
    x = to_tensor(data.train_x[pick], model.mean, model.std, dev)
    if fit_typicality(model, x, torch.from_numpy(data.train_y[pick])) is None:
        log(f"typicality not fitted: it needs a last linear layer of at most {MAX_FEATURES:,} inputs and training "
            "images of every class, at least twice as many as those inputs; predict will not tell inputs unlike them")
    else:
        log(f"typicality fitted on {len(x):,} training images")


def _wrap(model: Network, cfg: TrainConfig, w: distributed.World, dev: torch.device) -> torch.nn.Module:
    """The module the training steps call: DDP across processes, compiled if asked; `model` stays the plain one."""
    net: torch.nn.Module = model
    if w.active:
        net = DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None,
                                      **_rank_local_buffers())
    if cfg.compile:
        # On a GPU a small CNN's step is bound by kernel launches, not arithmetic: "reduce-overhead" also records
        # the compiled forward and backward as CUDA graphs, replayed with one launch each. Not under DDP, whose
        # BatchNorm buffers and autograd hooks PyTorch's graph trees do not take (they skip or fail there).
        graphs = dev.type == "cuda" and not w.active
        net = torch.compile(net, mode="reduce-overhead" if graphs else None)
    return net


def _rank_local_buffers() -> dict[str, bool]:
    """DDP's option for each rank to keep its own BatchNorm statistics, averaged at each epoch's end
    (`distributed.average_buffers`): by default it sends rank 0's to every rank before each step, a broadcast a step
    for nothing. PyTorch renamed it after 2.11 and warns at the old name."""
    init = inspect.signature(DistributedDataParallel.__init__).parameters
    return {"forward_sync_buffers" if "forward_sync_buffers" in init else "broadcast_buffers": False}


@dataclass
class _Loop:
    """One run's training steps: the wrapped network, optimiser, schedule and this process's shard."""

    cfg: TrainConfig
    net: torch.nn.Module
    opt: torch.optim.Optimizer
    world: distributed.World
    steps: int
    background: float  # a black pixel after normalisation: what augmentation fills borders with
    sched: torch.optim.lr_scheduler.LRScheduler | None = None
    ema: WeightAverage | None = None
    log: Log | None = None  # where there is no progress bar, a line now and then during an epoch
    graph: tuple[bool, StepGraph] | None = None  # with --cuda-graphs: the recorded step, and whether it is bf16's
    stepped: bool = False  # whether the weights have changed yet
    # The epoch's summed loss and hits, kept on the device (the steps never wait for the host) in tensors that stay
    # the same, as a recorded step needs.
    loss_sum: torch.Tensor = field(init=False)
    correct: torch.Tensor = field(init=False)

    def __post_init__(self) -> None:
        device = next(self.net.parameters()).device
        self.loss_sum = torch.zeros((), device=device)
        self.correct = torch.zeros((), device=device, dtype=torch.long)

    def batches(self, n: int, epoch: int, device: torch.device) -> torch.Tensor:
        """This rank's (steps, batch) indices: every rank draws the same permutation and takes its own slice."""
        perm = torch.randperm(n, generator=torch.Generator().manual_seed((self.cfg.seed * 100_003 + epoch) % 2**63))
        shard = perm[self.world.rank :: self.world.size][: self.steps * self.cfg.batch_size]
        return shard.view(self.steps, self.cfg.batch_size).to(device)

    def epoch(self, x: torch.Tensor, y: torch.Tensor, epoch: int) -> dict:
        cfg, dev = self.cfg, x.device
        augment = augmentation(cfg)
        recipe = get_spec(cfg.model).recipe
        finishing = cfg.precision == "auto" and epoch > cfg.epochs - round(recipe.fp32_finish * cfg.epochs)
        bf16 = use_bf16(cfg.precision, dev) and not finishing
        self.net.train()
        start = last_draw = time.perf_counter()
        batches = self.batches(len(x), epoch, dev)
        precision = nullcontext() if bf16 else exact_fp32(dev)  # an epoch called fp32 is not TF32 on a GPU
        with precision, progress_bar(f"epoch {epoch}/{cfg.epochs}", self.steps,
                                     enabled=None if self.world.is_main else False, log=self.log) as bar:
            if cfg.cuda_graphs and (self.graph is None or self.graph[0] != bf16):
                # Recorded in the epoch's precision, on the clock: recording is part of what the graphs cost.
                self.graph = None  # the new recording makes gradients of its own; the old graph's are dropped
                self.graph = (bf16, StepGraph(lambda idx: self.forward_backward(x, y, idx, augment, bf16),
                                              batches[0], self.net))
            self.loss_sum.zero_()
            self.correct.zero_()
            for step, idx in enumerate(batches):
                if self.graph is not None:
                    self.graph[1](idx)
                else:
                    self.opt.zero_grad(set_to_none=True)
                    self.forward_backward(x, y, idx, augment, bf16)
                self.opt.step()
                self.stepped = True
                if self.sched is not None:
                    self.sched.step()
                if self.ema is not None:
                    self.ema.update()
                now = time.perf_counter()
                if now - last_draw > 0.25 and bar.due():  # reading values back costs a device sync: only to show
                    last_draw, seen = now, (step + 1) * cfg.batch_size
                    bar.update(step + 1, f"loss {self.loss_sum.item() / (step + 1):.4f}  "
                               f"acc {self.correct.item() / seen:.2%}  "
                               f"{seen * self.world.size / (now - start):,.0f} img/s")
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)  # the device trained on: without one, synchronize waits for cuda:0 only
        seconds = time.perf_counter() - start
        images = self.steps * cfg.batch_size * self.world.size
        return {
            "epoch": epoch,
            "train_loss": round(self.loss_sum.item() / self.steps, 6),
            "train_accuracy": round(self.correct.item() / (self.steps * cfg.batch_size), 6),
            "seconds": round(seconds, 3),
            "images_per_second": round(images / seconds, 1),
            "precision": "bf16" if bf16 else "fp32",
        }

    def forward_backward(self, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor, augment: dict,
                         bf16: bool) -> None:
        """The batch `idx`'s forward and backward passes, its loss and hits added to the epoch's sums: a training
        step but for the optimiser's. Nothing in here reads a value back to the host, so it can be recorded as a
        CUDA graph."""
        xb, yb = x[idx], y[idx]
        if augment:
            xb = augment_batch(xb, self.background, **augment)
        if self.cfg.compile and x.device.type == "cuda":
            torch.compiler.cudagraph_mark_step_begin()  # last step's graph outputs may be overwritten now
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
            out = self.net(xb)
            loss = F.cross_entropy(out, yb, label_smoothing=self.cfg.label_smoothing)
        loss.backward()
        self.loss_sum += loss.detach().float()
        self.correct += (out.detach().argmax(1) == yb).sum()


def augmentation(cfg: TrainConfig) -> dict:
    """The augmentation a resolved config trains with: its recipe's, or the zoo's standard where the recipe has
    none and --augment asks for it (e.g. `fast`); {} for none."""
    return (get_spec(cfg.model).recipe.augment or STANDARD) if cfg.augment else {}


def _share(fraction: float) -> str:
    """A share as a percentage to three significant figures: 10 %, 2 %, 0.4 % (never a share rounded to 0 %)."""
    return f"{fraction * 100:.3g} %"


def _held_out(n: int, cfg: TrainConfig) -> str:
    """The share held out, and where it rounds to no image (as `split_indices` rounds), that none is."""
    if cfg.val_split and not round(n * cfg.val_split):
        return f"{_share(cfg.val_split)} held out: no image of {n:,}"
    return f"{_share(cfg.val_split)} held out"


def _epoch_line(row: dict, cfg: TrainConfig) -> str:
    # The training loss is what the steps minimise, label smoothing included: higher than a plain cross-entropy.
    loss = "smoothed loss" if cfg.label_smoothing else "loss"
    line = (f"epoch {row['epoch']}/{cfg.epochs}  {loss} {row['train_loss']:.4f}  acc {row['train_accuracy']:.2%}  "
            f"{row['seconds']:.1f}s  {row['images_per_second']:,.0f} img/s")
    if "val_accuracy" in row:
        line += f"  val_loss {row['val_loss']:.4f}  val_acc {row['val_accuracy']:.2%}"
    if "test_accuracy" in row:
        line += f"  test_acc {row['test_accuracy']:.2%}"
    return line


@dataclass
class RunResult:
    run_dir: Path | None  # None on torchrun ranks other than 0, which write nothing
    metrics: dict
    model: Network




def new_run_dir(model: str, out: str | None) -> tuple[Path, list[Path]]:
    """The run folder (`out`, or a new runs/<model>-<timestamp>), and the folders that creating it makes.

    A name of its own is taken by creating the folder, so that two runs started in the same second never share one.
    """
    if out == "":
        raise ConfigError("--out is empty; leave it out for runs/<model>-<timestamp>.")
    if out:
        return Path(out), folders_to_make(Path(out))
    base = Path("runs") / f"{model}-{time.strftime('%Y%m%d-%H%M%S')}"
    path, k = base, 1
    while True:
        made = folders_to_make(path)
        try:
            path.mkdir(parents=True)
            return path, made
        except FileExistsError:
            if not (path.exists() or path.is_symlink()):  # a folder above it is in the way (a broken link, a file)
                return path, made
            k += 1
            path = base.with_name(f"{base.name}-{k}")
        except OSError:  # claim_folder says why, in the words it has for an --out of the user's
            return path, made


# Options a machine of a multi-machine run may give in its own way: its paths, its device, and what only rank 0 uses.
PER_MACHINE = ("out", "overwrite", "data_dir", "device")


def train(config: TrainConfig | dict, log: Log | None = stderr_log) -> RunResult:
    """A whole run: load data, build the model, fit, evaluate on the test set, write the run folder.

    `config` may also be a dict of options; `log=None` says nothing. Ctrl-C once training has begun does not raise
    (before, while the data are read or fetched, it does): the result comes back with `metrics["interrupted"]`,
    and the run folder holds the last completed epoch's checkpoint and a metrics.json that says so. Under torchrun
    every rank trains; rank 0 alone writes the run folder, calibrates and evaluates.
    """
    if config is None:  # not "the defaults": a run of the default model by accident would take a while
        raise ConfigError("train() needs its options: e.g. train(TrainConfig(model='fast', epochs=1)).")
    cfg, log = _config(config).resolved(), _logger(log)
    device = resolve_device(cfg.device)  # a device that is not there fails now, before any data is read or folder made
    if cfg.cuda_graphs:  # and so do CUDA graphs where they cannot be (fit checks again, for its own callers)
        check_graphs(device, distributed.world().active, cfg.compile, augmentation(cfg))
    # Under torchrun, the processes first check that they were given the same options (each machine types its own
    # command line); then rank 0 fetches the data (once for all) and claims the run folder before the others start,
    # so that what it cannot do stops them at once.
    distributed.same_options({k: v for k, v in dataclasses.asdict(cfg).items() if k not in PER_MACHINE}, device)
    main = distributed.first_on_main(lambda: _set_up(cfg, claim=True), device)
    data, model, run_dir, made = main or _set_up(cfg, claim=False)
    if run_dir is not None:
        result = _main_run(cfg, data, model, log, run_dir, made)
    else:
        history = fit(model, data, cfg, log=log)
        result = RunResult(None, {"epochs": len(history.epochs), "train_seconds": history.train_seconds,
                                  "interrupted": history.interrupted}, model)
    # Only a run that ended well waits for the other ranks: after an error or Ctrl-C they may be gone or stuck in a
    # collective the others left, and the barrier would hang or bury the error under a connection failure.
    if not result.metrics["interrupted"]:
        distributed.finish()
    return result


def _model_for(name: str, data: Dataset) -> Network:
    """A new network of that name for the data's images: images too large for any network are the data's fault, not
    an input_size the user never gave."""
    channels, *sides = data.input_shape
    if max(sides) > MAX_SIDE:
        raise DataError(f"{data.source or data.name} has {sides[0]}×{sides[1]} images; a network takes at most "
                        f"{MAX_SIDE:,} pixels a side: scale them down first.")
    return create_model(name, len(data.classes), channels, tuple(sides))


def _set_up(cfg: TrainConfig, claim: bool) -> tuple[Dataset, Network, Path | None, list[Path]]:
    """The data, the model, and (with `claim`, for the process that writes) the run folder with the folders made for
    it; the folder last, so that a data set or model that fails leaves none behind."""
    data = load_dataset(cfg.dataset, cfg.data_dir)
    torch.manual_seed(cfg.seed)  # the initial weights too come from the seed
    model = _model_for(cfg.model, data)
    if not claim:
        return data, model, None, []
    run_dir, made = new_run_dir(cfg.model, cfg.out)
    try:
        return data, model, claim_folder(run_dir, cfg.overwrite, RUN_FILES), made
    except ConfigError:
        remove_empty(made)
        raise


def _metrics(cfg: TrainConfig, data: Dataset, history: History, world_size: int) -> dict:
    """What metrics.json says of a run (the test figures are added once it is tested)."""
    return {
        "model": cfg.model,
        "dataset": data.name,
        "epochs": len(history.epochs),
        "train_seconds": round(history.train_seconds, 3),
        "interrupted": history.interrupted,
        "world_size": world_size,
        **({"target_reached": history.target_reached} if cfg.target_accuracy is not None else {}),
        **({"ema": history.ema} if history.ema else {}),
        "history": history.epochs,
    }


def _record_failure(run_dir: Path, metrics: dict, error: BaseException, log: Log) -> None:
    """metrics.json of a run that an error (or a second Ctrl-C while it stopped) ended after some epochs: which
    epochs its checkpoint holds, and why."""
    why = {} if isinstance(error, KeyboardInterrupt) else {"error": distributed.failure_reason(error)}
    unsaid = ""
    try:
        with ctrl_c_held():  # torchrun stops the other processes once one fails: the error is the news, not that
            atomic_write_json(run_dir / "metrics.json", {**metrics, "interrupted": True, **why})
    except OSError as e:  # the disk that refused the checkpoint may refuse this too: the error itself is the news
        unsaid = f" (its metrics.json could not say so: {e.strerror or e})"
    log(f"stopped after epoch {metrics['epochs']}: {run_dir} keeps its checkpoint{unsaid}")


def _main_run(cfg: TrainConfig, data: Dataset, model: Network, log: Log, run_dir: Path,
              made: list[Path]) -> RunResult:
    dataset_info = {"name": data.name, "sha256": data.sha256, "source": data.source}
    card = {"dataset": dataset_info, "seed": cfg.seed, "training": dataclasses.asdict(cfg)}
    world_size = distributed.world().size

    def records(h: History) -> None:
        atomic_write_json(run_dir / "config.json", dataclasses.asdict(cfg))
        atomic_write(run_dir / "history.csv", lambda f: f.write(h.to_csv().encode()))

    saved = History()  # the epochs whose checkpoint is whole in the folder

    def save_epoch(m: Network, h: History) -> bool:
        """Each epoch leaves a usable folder: if the run is killed later, its model, options and history stay.

        Returns whether Ctrl-C was pressed meanwhile: it waits, so that model, card and history are of one epoch.
        """
        nonlocal saved
        with ctrl_c_held() as pressed:
            if not saved.epochs and not cfg.overwrite and (found := [n for n in RUN_FILES if (run_dir / n).exists()]):
                # Claimed empty when this run began: another run with the same --out has written since.
                raise ConfigError(f"{run_dir} has received {', '.join(found)} from another run since this one began "
                                  "(two runs with the same --out?): this one stops, and the other's files stay.")
            # The model first: a save that fails (a full disk) leaves an earlier run (--overwrite) whole.
            write_model(m, run_dir, **card, metrics={"epochs": len(h.epochs), **h.epochs[-1]})
            try:
                if not saved.epochs:  # this run's first files: none of the earlier run's records may stay beside them
                    for name in RUN_RECORDS:
                        (run_dir / name).unlink(missing_ok=True)
                records(h)
            except BaseException:
                if not saved.epochs:  # a model without its options and history is no whole epoch: none of it stays
                    for name in RUN_FILES:
                        (run_dir / name).unlink(missing_ok=True)
                raise
            saved = dataclasses.replace(h, epochs=list(h.epochs))
        return bool(pressed)

    def checkpoint(m: Network, h: History) -> None:
        if save_epoch(m, h):
            raise KeyboardInterrupt  # now: fit stops after this epoch, whose files are whole

    try:  # the first line too: a log that fails (stderr on a full disk) leaves no empty folder either
        log(f"training {cfg.model} on {data.name} ({len(data.train_x):,} images, {_held_out(len(data.train_x), cfg)}) "
            f"for {cfg.epochs} epoch{'s' * (cfg.epochs != 1)} on {resolve_device(cfg.device)}"
            + (f" × {world_size} processes" if world_size > 1 else "") + f" → {run_dir}")
        history = fit(model, data, cfg, log=log, on_epoch_end=checkpoint)
        # A second Ctrl-C, pressed as the first stops the training, may come before Ctrl-C is held here: it is
        # caught below, with the folder tidied and its metrics.json written.
        with ctrl_c_held() as late:  # Ctrl-C from here on skips the test evaluation, and nothing else
            if history.interrupted and history.epochs and len(saved.epochs) < len(history.epochs):
                # Ctrl-C came after the last epoch ended, before its checkpoint: the model in memory is that epoch's.
                save_epoch(model, history)
            if history.calibration:
                card["calibration"] = history.calibration
            if history.ema:
                card["ema"] = history.ema
            metrics = _metrics(cfg, data, history, world_size)
    except BaseException as e:
        remove_empty(made)
        if saved.epochs:  # a full disk, a diverged loss, a lost process: the folder's last epoch is whole, says why
            _record_failure(run_dir, _metrics(cfg, data, saved, world_size), e, log)
        raise
    if not history.epochs:  # stopped before an epoch ended: nothing of this run to keep, an older run's files stay
        remove_empty(made)
        return RunResult(run_dir, metrics, model)
    if not history.interrupted:
        try:
            result = None if late else evaluate(model, data)
        except KeyboardInterrupt:
            result = None
        if result is None:
            metrics["interrupted"] = True
            log("interrupted before or during the test evaluation: stopping; the trained model is kept, untested")
        else:
            metrics.update(test_accuracy=result.accuracy, test_loss=round(result.loss, 6))
    try:
        with ctrl_c_held() as pressed:  # the files of a run that ended, whichever way, agree with each other
            if not history.interrupted:  # trained to the end: the model in memory has its temperature fitted too
                write_model(model, run_dir, **card, metrics={k: v for k, v in metrics.items() if k != "history"})
            records(history)
            atomic_write_json(run_dir / "metrics.json", metrics)
    except Exception as e:  # a full disk: the folder keeps the last epoch's checkpoint, and says why it is no more
        if "test_accuracy" in metrics:  # of the model that could not be saved: said, as it is nowhere else
            log(f"test accuracy {metrics['test_accuracy']:.2%} of the trained model, which could not be saved")
        _record_failure(run_dir, _metrics(cfg, data, saved, world_size), e, log)
        raise
    if "test_accuracy" in metrics:
        scaled = " (with the fitted temperature)" if history.calibration else ""
        log(f"test accuracy {metrics['test_accuracy']:.2%}  test loss {metrics['test_loss']:.4f}{scaled}  "
            f"train time {history.train_seconds:.1f}s  → {run_dir}")
    if pressed:  # the run had ended; its files are whole, and stopping is all that was left to do
        log("Ctrl-C came while the run folder was being written: it was finished first")
    return RunResult(run_dir, metrics, model)
