"""The errors convnet raises for bad input: each carries a message meant for the user, shown without a traceback."""

import numbers
import operator


def first_line(error: BaseException, empty: str = "no reason given") -> str:
    """The first line of an error's message (PyTorch's run over many), or `empty` if it has none."""
    return (str(error).strip().splitlines() or [empty])[0]


class ConvnetError(Exception):
    """Base class: the CLI prints the message and exits non-zero."""


class DataError(ConvnetError):
    """A data set is missing, corrupt, tampered with or in an unknown format."""


class ModelError(ConvnetError):
    """A model file or name cannot be used."""


class ConfigError(ConvnetError):
    """An option or setting is unknown or out of range."""


class ImageError(ConvnetError, ValueError):
    """The input cannot be used as an image; the message says why."""


class NoInkError(ImageError):
    """The image is readable but holds nothing that looks like a digit."""


def is_number(value: object) -> bool:
    """Whether `value` is a real number, Python's or numpy's, and not a bool (True is no confidence or scale)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def whole_count(name: str, value: object) -> int:
    """`value` as a plain int if it is a whole number of at least 1 (Python's or numpy's, not a bool): a size or a
    count; else a ConfigError that names `name`."""
    try:
        whole = None if isinstance(value, bool) else operator.index(value)
    except TypeError:
        whole = None
    if whole is None or whole < 1:
        raise ConfigError(f"{name} must be a whole number of at least 1, not {value!r}.")
    return whole
