"""Evaluation: accuracy, loss, per-class precision/recall/F1 and the confusion matrix, returned as named results."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from convnet.calibrate import expected_calibration_error, judged_forward, judges
from convnet.checkpoint import check_settings
from convnet.data import Dataset, to_tensor
from convnet.device import resolve_device
from convnet.errors import ConfigError, DataError, ModelError
from convnet.models import Ensemble, Network, list_models


@dataclass
class EvalResult:
    accuracy: float
    loss: float
    confusion: np.ndarray  # (true, predicted) counts
    classes: list[str]
    ece: float = 0.0  # expected calibration error with the model's temperature
    ece_uncalibrated: float | None = 0.0  # … and with temperature 1 (None for an ensemble: see `temperature`)
    # The model's softmax temperature, which the loss and `ece` are computed with; None for an ensemble, whose
    # members each divide by their own before their probabilities are averaged.
    temperature: float | None = 1.0
    # Of the images, how many are unlike the training images (`predict` withholds its answer), and how many of those
    # the model gets wrong; None for a model without a typicality (calibrate.fit_typicality).
    unlike: int | None = None
    unlike_wrong: int | None = None
    predicted: np.ndarray | None = field(default=None, repr=False)  # each image's class index, in the data's order

    @property
    def count(self) -> int:
        return int(self.confusion.sum())

    @property
    def mistakes(self) -> int:
        return self.count - int(np.trace(self.confusion))

    @property
    def per_class(self) -> dict[str, np.ndarray]:
        return per_class_metrics(self.confusion)

    def to_dict(self) -> dict:
        pc = self.per_class
        return {
            "accuracy": self.accuracy,
            "loss": self.loss,
            "count": self.count,
            "ece": self.ece,
            "ece_uncalibrated": self.ece_uncalibrated,
            "temperature": self.temperature,
            "unlike_training_images": None if self.unlike is None else {"count": self.unlike,
                                                                         "misclassified": self.unlike_wrong},
            "classes": self.classes,
            "per_class": {
                c: {**{k: round(float(pc[k][i]), 6) for k in ("precision", "recall", "f1")},
                    "support": int(pc["support"][i])}  # a count of images
                for i, c in enumerate(self.classes)
            },
            "confusion_matrix": self.confusion.tolist(),
        }


def per_class_metrics(confusion: np.ndarray) -> dict[str, np.ndarray]:
    """Precision, recall and F1 per class from a (true, predicted) confusion matrix; 0 where undefined."""
    cm = np.asarray(confusion, dtype=np.float64)
    tp = np.diag(cm)
    predicted, support = cm.sum(axis=0), cm.sum(axis=1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support}


def confusion_matrix(true: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    return np.bincount(true * num_classes + pred, minlength=num_classes * num_classes).reshape(num_classes, -1)


def logits_of(model: nn.Module, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Model outputs for a whole tensor, in batches, in eval mode (restoring the previous mode).

    Small batches are faster on a CPU: 256 images' activations stay in the caches, 2,000 images' do not (`fast`
    infers 40,000 images/s at 256 and 20,000 at 2,000 on the 2-core development machine)."""
    return judged_outputs(model, x, [], batch_size)[0]


@torch.inference_mode()
def judged_outputs(model: nn.Module, x: torch.Tensor, networks: list[nn.Module],
                   batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor | None]:
    """`logits_of`, and which images are unlike the training images as `networks` judge (None without any).
    The features come with the outputs, not from hooks: several threads may share a model."""
    was_training = model.training
    model.eval()
    try:
        parts = [judged_forward(model, x[i : i + batch_size], networks) for i in range(0, len(x), batch_size)]
        return torch.cat([out.float() for out, _ in parts]), torch.cat([f for _, f in parts]) if networks else None
    finally:
        model.train(was_training)


def evaluate_tensors(model: nn.Module, x: torch.Tensor, y: torch.Tensor, classes: list[str]) -> EvalResult:
    raw, far = judged_outputs(model, x, judges(model))
    temperature = float(getattr(model, "temperature", 1.0))
    logits = raw / temperature  # an ensemble's is 1: its members' temperatures are inside its outputs
    losses = F.cross_entropy(logits, y, reduction="none")
    # NaN or infinite outputs would score as chance with a NaN loss, which no report or JSON can carry
    broken = int((~torch.isfinite(logits).all(1) | ~torch.isfinite(losses)).sum())
    if broken:
        raise ModelError(f"the model gave non-finite outputs (NaN or infinity) for {broken} of {len(y)} images: its "
                         "weights are unusable (corrupt, or from a training that diverged).")
    loss = losses.mean().item()
    pred = logits.argmax(1)
    cm = confusion_matrix(y.cpu().numpy(), pred.cpu().numpy(), len(classes))
    return EvalResult(
        accuracy=float(np.trace(cm) / max(cm.sum(), 1)),
        loss=loss,
        confusion=cm,
        classes=classes,
        ece=expected_calibration_error(logits.softmax(1), y),
        predicted=pred.cpu().numpy(),
        **({} if far is None else {"unlike": int(far.sum()), "unlike_wrong": int((far & (pred != y)).sum())}),
        **({"ece_uncalibrated": None, "temperature": None} if isinstance(model, Ensemble) else
           {"ece_uncalibrated": expected_calibration_error(raw.softmax(1), y), "temperature": temperature}),
    )


def evaluate(
    model: Network | Ensemble, data: Dataset, split: str = "test", device: str | torch.device | None = None
) -> EvalResult:
    """Evaluate on a data set split with the model's own normalisation."""
    check_kinds(model, data)
    if split not in ("train", "test"):
        raise ConfigError(f"split must be 'train' or 'test', not {split!r}.")
    check_fits(model, data)
    check_settings(model)  # set by hand, maybe: a temperature of 0 would be blamed on the weights
    images, labels = getattr(data, f"{split}_x"), getattr(data, f"{split}_y")
    if not len(images):  # a Dataset may leave a split empty; scoring it would fail inside torch
        raise DataError(f"the {split} split of {data.name} holds no images: nothing to evaluate.")
    if list(model.classes) != list(data.classes):  # scores would count one class's answers as another's
        raise ConfigError(f"the model answers the classes {_names(model.classes)}, but {data.name} has "
                          f"{_names(data.classes)}: it was trained on other data.")
    dev = resolve_device(device) if device is not None else next(model.parameters()).device
    model.to(dev)
    x = to_tensor(images, model.mean, model.std, dev)
    y = torch.from_numpy(labels).to(dev)
    return evaluate_tensors(model, x, y, list(model.classes))


def shared_mistakes(ensemble: EvalResult, members: list[EvalResult], labels: np.ndarray) -> int:
    """How many of the ensemble's mistakes most of its members (more than half) also make on their own. An average
    seldom undoes those: when they are most of its mistakes, more members of the same kinds will hardly lower them;
    members that err differently may."""
    wrong = np.stack([m.predicted != labels for m in members])
    return int(((ensemble.predicted != labels) & (2 * wrong.sum(0) > len(members))).sum())


def check_kinds(model: object, data: object, kinds: tuple[type, ...] = (Network, Ensemble)) -> None:
    """`model` is one of `kinds` and `data` a Dataset: anything else would fail deep inside, with a message about
    some attribute; a name or path gets the function that loads it."""
    if not isinstance(model, kinds):
        # fit() takes a fresh network, named by its architecture; evaluate() a trained one, from its files
        fresh = Ensemble not in kinds and isinstance(model, str) and model in list_models()
        maker = "make it with create_model" if fresh else "load it with load_model"
        hint = f"; {maker}({str(model)!r})" if isinstance(model, (str, Path)) else ""
        made = "create_model or load_model" if Ensemble in kinds else "create_model, or a network from load_model"
        raise ConfigError(f"the model must be one made by {made}, not {_brief(model)}{hint}.")
    if not isinstance(data, Dataset):
        hint = (f"; load it with load_dataset({data!r})" if isinstance(data, str) else
                "; wrap arrays as convnet.Dataset(name, train_x, train_y, test_x, test_y)"
                if isinstance(data, (np.ndarray, torch.Tensor, tuple, list)) else "")
        raise ConfigError(f"the data must be a Dataset, as load_dataset returns, not {_brief(data)}{hint}.")


def _brief(value: object) -> str:
    """`value` as a message names it: plain values as written, objects by their type."""
    plain = value is None or isinstance(value, (str, Path, int, float, bool))
    if plain:
        return repr(str(value) if isinstance(value, Path) else value)[:80]
    kind = type(value).__name__
    return f"{'an' if kind[0] in 'AEIOU' else 'a'} {kind}"


def check_fits(model: Network | Ensemble, data: Dataset) -> None:
    """A model reads images of the one size and answers the classes it was built for: a mismatch would otherwise run
    and score like chance (or fail deep inside a layer), so it is refused up front. The data set's arrays are checked
    again too: they may have been replaced since it was made."""
    data.validate()
    if (model.in_channels, *model.input_size) != data.input_shape:
        raise ConfigError(f"the model takes {_shape((model.in_channels, *model.input_size))} images, but {data.name} "
                          f"has {_shape(data.input_shape)} images.")
    if model.num_classes != len(data.classes):
        raise ConfigError(f"the model answers {model.num_classes} classes, but {data.name} has {len(data.classes)}.")


def _names(classes: list[str]) -> str:
    return ", ".join(classes[:4]) + (", …" if len(classes) > 4 else "")


def _shape(shape: tuple[int, ...]) -> str:
    """(channels, *size) as sizes are written: 28×28, or 28×28×3; any number of axes, as a message must not fail."""
    channels, *size = shape
    return "×".join(map(str, size)) + (f"×{channels}" if channels != 1 else "")


def _calibration_line(result: EvalResult) -> str:
    """The expected calibration error, and the temperature it (and the loss) was computed with."""
    line = f"expected calibration error {result.ece:.4f}"
    if result.temperature is None:
        return f"{line} (each member of the ensemble with its own temperature, where one was fitted)"
    if result.temperature == 1:
        return f"{line} (no temperature fitted: confidences are the network's own)"
    return (f"{line} with the fitted temperature {result.temperature:.3g} (loss too), {result.ece_uncalibrated:.4f} "
            "without")


def format_report(result: EvalResult) -> str:
    """Accuracy, loss, the per-class table and the confusion matrix as plain text."""
    pc = result.per_class
    lines = [
        f"accuracy {result.accuracy:.4%}   loss {result.loss:.4f}   images {result.count}",
        _calibration_line(result),
        *([] if result.unlike is None else [
            f"unlike the training images: {result.unlike} of {result.count} ({result.unlike / max(result.count, 1):.2%}"
            f"), {result.unlike_wrong} of them misclassified; predict and read withhold their answers"]),
        "",
    ]
    name = max([8, *map(len, result.classes)])  # columns as wide as the longest class name
    lines.append(f"{'class':>{name}} {'precision':>10} {'recall':>8} {'f1':>8} {'support':>8}")
    for i, c in enumerate(result.classes):
        lines.append(f"{c:>{name}} {pc['precision'][i]:>10.4f} {pc['recall'][i]:>8.4f} {pc['f1'][i]:>8.4f} "
                     f"{int(pc['support'][i]):>8}")
    lines += ["", "confusion matrix (rows: true class, columns: predicted)"]
    width = max(5, *(len(text) + 1 for text in [str(int(result.confusion.max())), *result.classes]))
    lines.append(" " * name + "".join(f"{c:>{width}}" for c in result.classes))
    for c, row in zip(result.classes, result.confusion):
        lines.append(f"{c:>{name}}" + "".join(f"{int(v):>{width}}" for v in row))
    return "\n".join(lines)
