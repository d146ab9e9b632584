"""The errors convnet raises for bad input: each carries a message meant for the user, shown without a traceback."""


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
