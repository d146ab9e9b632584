"""convnet: train, evaluate and use convolutional neural networks for image recognition.

The lesson's workflow in a few lines:

    import convnet
    data = convnet.load_dataset("mnist")
    model = convnet.create_model("lesson")
    model.summary()
    history = convnet.fit(model, data, epochs=10, batch_size=32)
    result = convnet.evaluate(model, data)
    print(result.accuracy)
    convnet.save_model(model, "runs/my-lesson")
"""
__version__ = "0.1.0"

from convnet.device import flush_denormals  # noqa: E402

flush_denormals()  # before any PyTorch thread exists, so that all of them inherit it (see its docstring)

from convnet.checkpoint import load_model, save_model  # noqa: E402
from convnet.data import Dataset, load_dataset  # noqa: E402
from convnet.evaluate import EvalResult, evaluate  # noqa: E402
from convnet.models import create_model, list_models  # noqa: E402
from convnet.train import TrainConfig, fit, train  # noqa: E402

__all__ = [
    "Dataset",
    "EvalResult",
    "TrainConfig",
    "create_model",
    "evaluate",
    "fit",
    "list_models",
    "load_dataset",
    "load_model",
    "save_model",
    "train",
]
