from importlib import import_module

import torch

from convnet.data import load_dataset
from convnet.models import create_model
from convnet.models.deskew import deskew, deskew_training_images
from convnet.train import fit


def slanted_bar(slope: float, centre_x: float = 16.0) -> torch.Tensor:
    """A 2-pixel-wide stroke from row 4 to row 23 that leans `slope` pixels right per row down, on -0.4 background."""
    x = torch.full((1, 1, 28, 28), -0.4)
    for row in range(4, 24):
        col = round(centre_x + slope * (row - 13.5))
        x[0, 0, row, col : col + 2] = 2.8
    return x


def ink_columns(x: torch.Tensor) -> torch.Tensor:
    """Each inked row's centre of ink (column), for the rows that hold ink."""
    ink = (x - x.min())[0, 0]
    rows = ink.sum(1) > 1
    return (ink[rows] * torch.arange(28.0)).sum(1) / ink[rows].sum(1)


def test_deskew_stands_a_slanted_stroke_upright_in_the_middle():
    x = slanted_bar(0.5)
    assert ink_columns(x).std() > 2.5  # leans: its rows' ink spreads over ten columns
    out = deskew(x)
    columns = ink_columns(out)
    assert columns.std() < 0.5
    assert abs(columns.mean() - 13.5) < 0.5  # moved from column ≈ 16.5 to the middle
    assert out.min() >= -0.4 - 1e-6 and abs(out[0, 0, 0, 0] + 0.4) < 1e-6  # the background stays the background


def test_deskew_leaves_blank_images_alone():
    blank = torch.full((2, 1, 28, 28), -0.4)
    assert torch.allclose(deskew(blank), blank)


def test_deskewed_model_deskews_at_inference_and_fit_deskews_its_training_images_once(tiny_dir, monkeypatch):
    model = create_model("deskewed")
    x = slanted_bar(0.5)
    model.train()
    assert torch.equal(model[0](x), x)  # training batches are already deskewed: augmentation must survive
    model.eval()
    assert torch.allclose(model[0](x), deskew(x))
    assert torch.equal(deskew_training_images(create_model("accurate"), x), x)

    train_module = import_module("convnet.train")
    seen = []

    def spy(m, images):
        out = deskew_training_images(m, images)
        seen.append(len(images))
        assert not torch.equal(out, images) and torch.allclose(out, deskew(images))
        return out

    monkeypatch.setattr(train_module, "deskew_training_images", spy)
    data = load_dataset("mnist", tiny_dir)
    fit(model, data, epochs=1, batch_size=32, val_split=0.1, augment=False, log=lambda m: None)
    assert seen == [540]  # the 600 tiny images less the 60 held out, which stay raw for evaluation
