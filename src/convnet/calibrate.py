"""Honest confidence: temperature scaling (Guo et al., 2017, "On Calibration of Modern Neural Networks"), and
typicality, which tells inputs unlike the training images (below).

One scalar T divides the logits; it is fitted on held-out data by minimising the negative log-likelihood, which
leaves the predicted classes unchanged and makes "90 % confident" mean right about 90 % of the time.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from convnet.errors import ConfigError


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor, steps: int = 100) -> float:
    """The T > 0 minimising cross-entropy of logits / T on (logits, labels), kept within [0.05, 20]: held-out
    images the model never misses would send it towards 0."""
    logits, labels = logits.detach().float().cpu().clone(), labels.cpu()  # clone: may be an inference tensor
    log_t = torch.zeros((), requires_grad=True)  # optimise log T so that T stays positive
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    opt.step(closure)
    return float(log_t.detach().exp().clamp(0.05, 20.0))


def expected_calibration_error(probs: torch.Tensor, labels: torch.Tensor, bins: int = 15) -> float:
    """ECE: the gap between confidence and accuracy, averaged over equal-width confidence bins, weighted by size."""
    confidence, predicted = probs.max(1)
    correct = (predicted == labels).float()
    edges = torch.linspace(0, 1, bins + 1, device=probs.device)
    ece = torch.zeros((), device=probs.device)
    for lo, hi in zip(edges[:-1], edges[1:]):
        in_bin = (confidence > lo) & (confidence <= hi)
        if in_bin.any():
            ece += in_bin.float().mean() * (confidence[in_bin].mean() - correct[in_bin].mean()).abs()
    return float(ece)


# Typicality: how far an input's features lie from those of the training images. The softmax answers anything with
# one of its classes, a letter or a tangle of lines too, often with near certainty; the features before the last
# layer tell such inputs apart much better (Lee et al., 2018, "A Simple Unified Framework for Detecting
# Out-of-Distribution Samples"): the squared Mahalanobis distance to the nearest class mean, with one covariance
# shared by the classes. The threshold is a high quantile of the training images' own distances, so it turns away
# about that share of inputs like them, and much of what is unlike them (benchmarks/README.md has the figures).
TYPICAL_QUANTILE = 0.999
TYPICAL_IMAGES = 30_000  # the training images fitted on, at most: a few seconds for the larger networks on a CPU
MAX_FEATURES = 1024  # a wider last layer would need a covariance of millions of values


def last_linear(model: nn.Module) -> nn.Linear | None:
    """The network's last linear layer, whose input is the features typicality measures (None: it has none)."""
    return next((m for m in reversed(list(model.modules())) if isinstance(m, nn.Linear)), None)


def typical_shapes(model: nn.Module) -> tuple[tuple[int, int], tuple[int, int]] | None:
    """The shapes of a network's typicality tensors (class centres, whitening), or None if it cannot have them."""
    layer = last_linear(model)
    if layer is None or layer.in_features > MAX_FEATURES:
        return None
    return (layer.out_features, layer.in_features), (layer.in_features, layer.in_features)


def attach_typicality(model: nn.Module, centres: torch.Tensor, whiten: torch.Tensor, record: dict) -> None:
    """Give the network its typicality: tensors saved with its weights, and the record (threshold and how it was
    fitted) that goes into its card."""
    model.register_buffer("typical_centres", centres)
    model.register_buffer("typical_whiten", whiten)
    model.typicality = record


def detach_typicality(model: nn.Module) -> None:
    """Forget a fitted typicality: it belongs to the weights it was fitted with."""
    for name in ("typical_centres", "typical_whiten"):
        if hasattr(model, name):
            delattr(model, name)
    model.typicality = None


@contextmanager
def captured_features(networks: list[nn.Module]) -> Iterator[list[list[torch.Tensor]]]:
    """While open, each forward pass adds the input of each network's last linear layer to that network's list."""
    found: list[list[torch.Tensor]] = [[] for _ in networks]
    hooks = [last_linear(n).register_forward_pre_hook(lambda _, inputs, out=out: out.append(inputs[0].float()))
             for n, out in zip(networks, found)]
    try:
        yield found
    finally:
        for hook in hooks:
            hook.remove()


def typical_distance(model: nn.Module, features: torch.Tensor) -> torch.Tensor:
    """Each feature row's squared Mahalanobis distance to the nearest class centre, over the fitted threshold: above
    1 is unlike the training images."""
    z = features.float() @ model.typical_whiten
    return torch.cdist(z, model.typical_centres).square().min(1).values / model.typicality["threshold"]


def judges(model: nn.Module) -> list[nn.Module]:
    """The networks whose typicality decides for `model`: itself, or an ensemble's members if each has one; else
    none, and nothing is withheld."""
    networks = list(getattr(model, "members", [model]))
    return networks if all(getattr(n, "typicality", None) for n in networks) else []


def unlike(networks: list[nn.Module], features: list[list[torch.Tensor]]) -> torch.Tensor:
    """Which inputs are unlike the training images, from each judge's captured features (`captured_features`): an
    ensemble's members go by the mean of their distances over their thresholds."""
    return torch.stack([typical_distance(n, torch.cat(f)) for n, f in zip(networks, features)]).mean(0) > 1


@torch.inference_mode()
def fit_typicality(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 256) -> dict | None:
    """Fit the class centres, the shared covariance and the threshold on the training images `x` (normalised, as the
    network takes them) with labels `y`, and attach them to the model; returns its record, or None when they cannot
    be fitted (no linear layer or too wide a one, a class without images, fewer images than twice the features).
    One fitted before is dropped either way: it belongs to the weights it was fitted with."""
    detach_typicality(model)
    if typical_shapes(model) is None:
        return None
    classes = typical_shapes(model)[0][0]
    if not (isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor) and y.ndim == 1 and len(x) == len(y)
            and not y.is_floating_point() and (not len(y) or 0 <= int(y.min()) <= int(y.max()) < classes)):
        raise ConfigError(f"fit_typicality takes the images as one tensor, as the network takes them, and their "
                          f"labels as a tensor of as many class indices 0–{classes - 1}.")
    was_training = model.training
    model.eval()
    try:
        with captured_features([model]) as (found,):
            for i in range(0, len(x), batch_size):
                model(x[i : i + batch_size])
    finally:
        model.train(was_training)
    f = torch.cat(found).cpu().double()  # on the CPU first: MPS has no float64
    y = y.cpu()
    dim = f.shape[1]
    if len(f) < 2 * dim or bool((torch.bincount(y, minlength=classes) == 0).any()):
        return None
    means = torch.stack([f[y == c].mean(0) for c in range(classes)])
    centred = f - means[y]
    cov = centred.T @ centred / len(f)
    cov += 1e-3 * cov.trace() / dim * torch.eye(dim, dtype=cov.dtype)  # features that never fire leave it singular
    whiten = torch.linalg.cholesky(torch.linalg.inv(cov))  # whiten @ whiten.T is the precision matrix
    distances = torch.cdist(f @ whiten, means @ whiten).square().min(1).values
    record = {"threshold": float(torch.quantile(distances, TYPICAL_QUANTILE)), "quantile": TYPICAL_QUANTILE,
              "fitted_on": f"training images ({len(f)})", "features": dim}
    device = next(model.parameters()).device  # where the network's features will be
    attach_typicality(model, (means @ whiten).float().to(device), whiten.float().to(device), record)
    return record
