"""Model registry and architectures: `create_model(name)`, `list_models()`, `count_macs`, `Network.summary()`."""
from convnet.models import zoo  # noqa: F401  (registers the architectures)
from convnet.models.ensemble import Ensemble
from convnet.models.registry import (
    ModelSpec,
    Network,
    Recipe,
    count_macs,
    create_model,
    get_spec,
    list_models,
    register_model,
)

__all__ = [
    "Ensemble",
    "ModelSpec",
    "Network",
    "Recipe",
    "count_macs",
    "create_model",
    "get_spec",
    "list_models",
    "register_model",
]
