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

from convnet.interrupt import imports_held  # noqa: E402

with imports_held("convnet"):  # Ctrl-C while PyTorch loads: the imports finish, then one line, no traceback
    from convnet.device import flush_denormals

    flush_denormals()  # before any PyTorch thread exists, so that all of them inherit it (see its docstring)

    from convnet.checkpoint import build_ensemble, load_model, save_model
    from convnet.config import TrainConfig
    from convnet.data import Dataset, load_dataset
    from convnet.errors import ConvnetError
    from convnet.evaluate import EvalResult, evaluate
    from convnet.models import Ensemble, create_model, list_models
    from convnet.train import fit, train

__all__ = [
    "ConvnetError",
    "Dataset",
    "Ensemble",
    "EvalResult",
    "TrainConfig",
    "build_ensemble",
    "create_model",
    "evaluate",
    "fit",
    "list_models",
    "load_dataset",
    "load_model",
    "save_model",
    "train",
]
