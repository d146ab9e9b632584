"""Honest confidence: temperature scaling (Guo et al., 2017, "On Calibration of Modern Neural Networks"), and
typicality, which tells inputs unlike the training images (below).

One scalar T divides the logits; it is fitted on held-out data by minimising the negative log-likelihood, which
leaves the predicted classes unchanged and makes "90 % confident" mean right about 90 % of the time.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from convnet.errors import ConfigError, whole_count


TEMPERATURES = (0.05, 20.0)  # the fitted temperature is kept within these


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor, steps: int = 100) -> float:
    """The T > 0 minimising cross-entropy of logits / T on (logits, labels), kept within TEMPERATURES: held-out
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
    low, high = TEMPERATURES
    return min(max(float(log_t.detach().exp()), low), high)  # in Python: float32's 0.05 is not 0.05


def temperature_for_confidence(logits: torch.Tensor, confidence: float, steps: int = 60) -> float:
    """The T within TEMPERATURES at which the mean top probability of softmax(logits / T) is `confidence` (the bound
    nearest it where it cannot be reached). That mean falls as T rises, so halving the interval of log T finds it."""
    logits = logits.detach().float().cpu()

    def sureness(log_t: float) -> float:
        return float(torch.softmax(logits / math.exp(log_t), 1).amax(1).mean())

    low, high = (math.log(t) for t in TEMPERATURES)
    if sureness(low) <= confidence:
        return TEMPERATURES[0]
    if sureness(high) >= confidence:
        return TEMPERATURES[1]
    for _ in range(steps):
        middle = (low + high) / 2
        low, high = (middle, high) if sureness(middle) > confidence else (low, middle)
    return math.exp((low + high) / 2)


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


def typical_shapes(model: nn.Module) -> tuple[tuple[int, int], tuple[int, int]] | None:
    """The shapes of a network's typicality tensors (class centres, whitening), or None if it cannot have them."""
    layer = model.feature_layer() if hasattr(model, "feature_layer") else None  # an ensemble's members have their own
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


def judged_forward(model: nn.Module, x: torch.Tensor, networks: list[nn.Module]) -> tuple[torch.Tensor,
                                                                                          torch.Tensor | None]:
    """The model's output for `x`, and which inputs its judges (`networks`, as `judges` gives them) find unlike the
    training images; None with no judges, and then no features are gathered."""
    if not networks:
        return model(x), None
    out, features = model.forward_with_features(x)
    return out, unlike(networks, features)


def unlike(networks: list[nn.Module], features: list[torch.Tensor]) -> torch.Tensor:
    """Which inputs are unlike the training images, from each judge's features (`forward_with_features`): an
    ensemble's members go by the mean of their distances over their thresholds."""
    return torch.stack([typical_distance(n, f) for n, f in zip(networks, features)]).mean(0) > 1


@torch.no_grad()  # not inference_mode: the tensors kept must stay ordinary ones, which load_state_dict can fill
def fit_typicality(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 256) -> dict | None:
    """Fit the class centres, the shared covariance and the threshold on the training images `x` (N, C, H, W),
    normalised as the network takes them, with their class indices `y`, and attach them to the network; returns its
    record, or None when they cannot be fitted (no linear layer or too wide a one, a class without images, fewer
    images than twice the features, features that do not vary). One fitted before is dropped either way: it belongs
    to the weights it was fitted with. An ensemble's members each have their own."""
    if not hasattr(model, "forward_with_features") or hasattr(model, "members"):
        raise ConfigError("fit_typicality fits one trained network; for an ensemble, fit each of its members "
                          "(ensemble.members) and put them together again.")
    shapes = _check_typical_inputs(model, x, y, batch_size)
    # The features first: a failure there (Ctrl-C, memory) leaves the model's typicality as it was.
    f = _features(model, x, batch_size) if shapes is not None and len(x) >= 2 * shapes[1][0] else None
    detach_typicality(model)
    if f is None:
        return None
    classes = shapes[0][0]
    f, y = f.cpu().double(), y.cpu().long()  # on the CPU first: MPS has no float64
    dim = f.shape[1]
    if bool((torch.bincount(y, minlength=classes) == 0).any()) or not f.isfinite().all():
        return None
    means = torch.stack([f[y == c].mean(0) for c in range(classes)])
    centred = f - means[y]
    cov = centred.T @ centred / len(f)
    if not cov.trace() > 0:  # features that do not vary within the classes: no spread to measure against
        return None
    cov += 1e-3 * cov.trace() / dim * torch.eye(dim, dtype=cov.dtype)  # features that never fire leave it singular
    try:
        whiten = torch.linalg.cholesky(torch.linalg.inv(cov))  # whiten @ whiten.T is the precision matrix
    except torch.linalg.LinAlgError:
        return None
    distances = torch.cdist(f @ whiten, means @ whiten).square().min(1).values
    threshold = float(torch.quantile(distances, TYPICAL_QUANTILE))
    if not 0 < threshold < float("inf"):
        return None
    record = {"threshold": threshold, "quantile": TYPICAL_QUANTILE, "fitted_on": f"training images ({len(f)})",
              "features": dim}
    device = next(model.parameters()).device  # where the network's features will be
    attach_typicality(model, (means @ whiten).float().to(device), whiten.float().to(device), record)
    return record


def _features(model: nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    """The network's features of `x` in evaluation mode, batch by batch, in the network's own dtype and device."""
    weight = next(model.parameters())
    was_training = model.training
    model.eval()
    try:
        return torch.cat([model.forward_with_features(x[i : i + batch_size].to(weight.device, weight.dtype))[1][0]
                          for i in range(0, len(x), batch_size)])
    finally:
        model.train(was_training)


def _check_typical_inputs(model: nn.Module, x: object, y: object, batch_size: object) -> tuple | None:
    """The typicality's shapes (`typical_shapes`; None for a network that cannot have one); a ConfigError for inputs
    fit_typicality cannot take."""
    shapes = typical_shapes(model)
    classes = shapes[0][0] if shapes else model.num_classes
    shape = (model.in_channels, *model.input_size)
    if not (isinstance(x, torch.Tensor) and tuple(x.shape[1:]) == shape and x.is_floating_point()
            and isinstance(y, torch.Tensor) and y.ndim == 1 and len(x) == len(y) and not y.is_floating_point()
            and y.dtype != torch.bool and (not len(y) or 0 <= int(y.min()) <= int(y.max()) < classes)):
        raise ConfigError(f"fit_typicality takes the images as one float tensor (N, {', '.join(map(str, shape))}), "
                          f"normalised as the network takes them, and their labels as a tensor of as many class "
                          f"indices 0–{classes - 1}.")
    whole_count("batch_size", batch_size)
    return shapes
