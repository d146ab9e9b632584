"""The model registry: each architecture registers a builder with its description and default training recipe.

Callers build networks with `create_model(name)` and read a recipe with `get_spec(name)`; adding an architecture
touches one file (timm's pattern).
"""
from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from convnet.errors import ConfigError, ModelError, whole_count


@dataclass(frozen=True)
class Recipe:
    """How a model is trained unless the user says otherwise."""

    epochs: int
    batch_size: int
    lr: float
    optimizer: str = "adamw"  # adam | adamw | sgd
    weight_decay: float = 0.0
    schedule: str = "onecycle"  # onecycle | constant
    label_smoothing: float = 0.0
    # rotate (degrees), shift and scale (fractions), lowres (the share of each batch blurred: `augment.random_lowres`)
    augment: dict[str, float] = field(default_factory=dict)
    val_split: float = 0.1  # the share of the training images held out for validation and the temperature fit
    # With `--precision auto` on bf16 hardware: the share of the last epochs computed in fp32 anyway. bf16's coarse
    # gradients cost the last hundredths of a percent once the learning rate has annealed; the early epochs do not
    # need fp32's precision and run 1.7× as fast without it.
    fp32_finish: float = 0.0
    # The decay of an exponential moving average of the weights, kept beside them and made the trained model at the
    # end (0: none). Keras calls it `use_ema`/`ema_momentum`.
    ema: float = 0.0


# (num_classes, in_channels, input_size) → the network's layers, in order
Builder = Callable[[int, int, tuple[int, int]], list[nn.Module]]


@dataclass(frozen=True)
class ModelSpec:
    name: str
    build: Builder
    description: str
    recipe: Recipe


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(name: str, description: str, recipe: Recipe) -> Callable[[Builder], Builder]:
    """Decorator: `@register_model("fast", "…", Recipe(…))` over `def build(num_classes, in_channels, input_size)`."""

    def wrap(build: Builder) -> Builder:
        _REGISTRY[name] = ModelSpec(name, build, description, recipe)
        return build

    return wrap


def get_spec(name: str) -> ModelSpec:
    if not isinstance(name, str):  # difflib below would fail on it with a TypeError
        raise ModelError(f"a model is named by a string, not {name!r}. Known models: {', '.join(_REGISTRY)}.")
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, _REGISTRY, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ModelError(f"unknown model {name!r}.{hint} Known models: {', '.join(_REGISTRY)}.")
    return _REGISTRY[name]


def list_models() -> list[str]:
    return list(_REGISTRY)


class Network(nn.Sequential):
    """A registered architecture plus what inference needs to know about it: classes and input normalisation."""

    def __init__(self, arch: str, layers: list[nn.Module], num_classes: int, in_channels: int, input_size):
        super().__init__(*layers)
        self.arch = arch
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.input_size = tuple(input_size)
        self.classes = [str(i) for i in range(num_classes)]
        self.mean, self.std = 0.0, 1.0  # set from the training data by `fit`
        self.temperature = 1.0  # softmax temperature, fitted on held-out data after training
        self.typicality: dict | None = None  # fitted after training too: convnet.calibrate.fit_typicality

    def feature_layer(self) -> nn.Linear | None:
        """The last linear layer, whose input is what typicality measures (None if the network has none)."""
        return next((m for m in reversed(self) if isinstance(m, nn.Linear)), None)

    def forward_with_features(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The output, and (as a list of one, as an ensemble gives one a member) the input of the feature layer (the
        network's own input if it has none), in one pass without hooks: several threads may share the network."""
        last = self.feature_layer()
        features = [x]
        for layer in self:
            if layer is last:
                features = [x.float()]
            x = layer(x)
        return x, features

    def predict(self, images: object, batch_size: int = 256) -> np.ndarray:
        """Keras' predict: (N, classes) calibrated probabilities for images as a data set holds them, uint8 0..255 or
        float 0..1 (`convnet.models.arrays`). The network itself, `model(x)`, takes normalised tensors."""
        from convnet.models.arrays import predict_arrays  # it needs evaluate, which imports this module

        return predict_arrays(self, images, batch_size)

    def summary(self, print_fn: Callable[[str], None] = print) -> None:
        """Keras-style table: layer, output shape, parameters, totals."""
        from convnet.models.summary import summary_table

        show(summary_table(self), print_fn)


def show(text: str, print_fn: Callable[[str], None]) -> None:
    """Hand a summary to `print_fn` (print, a logger's method, a list's append), checked first: a value that is no
    function would fail with Python's "'int' object is not callable"."""
    if not callable(print_fn):
        raise ConfigError(f"print_fn must be a function that takes the text, such as print; not {print_fn!r}.")
    print_fn(text)


CHECKED_AREA = 256 * 256  # input sizes up to this get a test pass in create_model
MAX_SIDE = 8192  # no image side a network is built for is longer (a card that says more is refused too)
MAX_CLASSES, MAX_CHANNELS = 100_000, 4  # nor has it more classes or image channels (grey, RGB, RGBA)


def create_model(name: str, num_classes: int = 10, in_channels: int = 1, input_size=(28, 28)) -> Network:
    spec = get_spec(name)
    num_classes, in_channels, input_size = _check_shape(num_classes, in_channels, input_size)
    try:
        layers = spec.build(num_classes, in_channels, input_size)
    except (MemoryError, RuntimeError) as e:  # a dense layer over a large image: torch's "can't allocate memory"
        if "alloc" not in str(e) and not isinstance(e, MemoryError):
            raise
        raise ConfigError(f"the {name!r} network for {input_size[0]}x{input_size[1]} images does not fit in memory: "
                          "its layers' weights grow with the image; give smaller images.") from None
    model = Network(name, list(layers), num_classes, in_channels, input_size)
    # A pass over a blank image finds layers that shrink small images to nothing. Not for large images, which are too
    # small for no layer and whose pass could take GBs; not on `meta` (a loader comparing a card with its weights
    # before it takes memory), where it would cost a second of imports, and the loader builds the network again.
    h, w = input_size
    if h * w <= CHECKED_AREA and not any(p.is_meta for p in model.parameters()):
        _check_input_size(model)
    return model


def _check_shape(num_classes: object, in_channels: object, input_size: object) -> tuple[int, int, tuple[int, int]]:
    """The sizes a network is built for as plain ints of at least 1 (numpy's too), with input_size as (height,
    width): anything else would fail inside a layer's constructor, or build a network that cannot run."""
    classes, channels = whole_count("num_classes", num_classes), whole_count("in_channels", in_channels)
    if classes > MAX_CLASSES or channels > MAX_CHANNELS:  # a model saved with more could not be loaded
        raise ConfigError(f"a network has at most {MAX_CLASSES:,} classes and {MAX_CHANNELS} image channels, not "
                          f"num_classes={classes:,} and in_channels={channels}.")
    try:
        if not isinstance(input_size, (tuple, list, np.ndarray)) or len(input_size) != 2:
            raise ConfigError("not a pair")
        height, width = (whole_count("input_size", side) for side in input_size)
        if max(height, width) > MAX_SIDE:
            raise ConfigError("too large")
    except ConfigError:
        raise ConfigError(f"input_size must be (height, width) in whole pixels, 1 to {MAX_SIDE:,}, e.g. (28, 28); "
                          f"not {input_size!r}.") from None
    return classes, channels, (height, width)


def blank_pass(model: Network, hooks: Iterable[RemovableHandle] = ()) -> None:
    """One forward pass of a blank image of the model's own input shape, on its device and in its dtype (a model
    trained on a GPU stays there), in eval mode without gradients; its mode is restored and `hooks` removed after."""
    parameter = next(model.parameters(), None)
    like = {} if parameter is None else {"device": parameter.device, "dtype": parameter.dtype}
    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, model.in_channels, *model.input_size, **like))
    finally:
        model.train(training)
        for handle in hooks:
            handle.remove()


def _check_input_size(model: Network) -> None:
    """One pass over a blank image: layers that shrink small images to nothing fail here, with a clear message."""
    try:
        blank_pass(model)
    except (RuntimeError, ValueError) as e:
        h, w = model.input_size
        raise ConfigError(f"{model.arch} cannot take {h}×{w} images: they are too small for its layers "
                          f"({e}).") from None


def count_macs(model: Network) -> int:
    """Multiply-accumulates for one image of the model's input size, counted on the convolution and linear layers."""
    macs = 0

    def hook(module: nn.Module, _inputs, output: torch.Tensor) -> None:
        nonlocal macs
        weight = module.weight
        per_output = weight[0].numel() if isinstance(module, nn.Conv2d) else weight.shape[1]
        macs += output[0].numel() * per_output

    blank_pass(model, [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))])
    return macs
