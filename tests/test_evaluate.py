import json
import math
import re

import numpy as np
import pytest
import torch
from torch import nn

from convnet.calibrate import expected_calibration_error
from convnet.data import Dataset, load_dataset
from convnet.errors import ConfigError, DataError, ModelError
from convnet.evaluate import (
    confusion_matrix,
    evaluate,
    evaluate_tensors,
    format_report,
    per_class_metrics,
    shared_mistakes,
)
from convnet.models import Ensemble, create_model
from convnet.train import fit


def test_metrics_on_a_known_confusion_matrix():
    # rows: true class, columns: predicted
    cm = np.array([[5, 1, 0], [2, 3, 1], [0, 0, 4]])
    m = per_class_metrics(cm)
    assert m["precision"] == pytest.approx([5 / 7, 3 / 4, 4 / 5])
    assert m["recall"] == pytest.approx([5 / 6, 3 / 6, 4 / 4])
    f1_0 = 2 * (5 / 7) * (5 / 6) / (5 / 7 + 5 / 6)
    assert m["f1"][0] == pytest.approx(f1_0)
    assert list(m["support"]) == [6, 6, 4]


def test_undefined_metrics_are_zero():
    m = per_class_metrics(np.array([[2, 0], [0, 0]]))
    assert m["precision"][1] == 0 and m["recall"][1] == 0 and m["f1"][1] == 0


def test_confusion_matrix_counts():
    cm = confusion_matrix(np.array([0, 0, 1, 2, 2]), np.array([0, 1, 1, 2, 0]), 3)
    assert cm.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 1]]


class Lookup(nn.Module):
    """Predicts the class written in the first pixel: a model with a known confusion matrix."""

    def forward(self, x):
        return nn.functional.one_hot(x[:, 0, 0, 0].long(), 3).float() * 10


def test_evaluate_tensors():
    pred = torch.tensor([0, 1, 1, 2, 0])
    x = pred.float().view(-1, 1, 1, 1)
    y = torch.tensor([0, 0, 1, 2, 2])
    r = evaluate_tensors(Lookup(), x, y, ["a", "b", "c"])
    assert r.accuracy == pytest.approx(3 / 5) and r.count == 5 and r.mistakes == 2
    assert r.confusion.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 1]]
    d = r.to_dict()
    assert d["per_class"]["b"]["precision"] == 0.5 and d["confusion_matrix"][2] == [1, 0, 1]
    assert d["per_class"]["c"]["support"] == 2 and type(d["per_class"]["c"]["support"]) is int
    report = format_report(r)
    assert "accuracy 60.0000%" in report and "confusion matrix" in report
    assert "(no temperature fitted: confidences are the network's own)" in report and d["temperature"] == 1.0
    # Logits of 10 for the answer: right answers lose log(1 + 2e⁻¹⁰), wrong ones log(e¹⁰ + 2); confident, 60 % right.
    assert r.loss == pytest.approx((3 * math.log1p(2 * math.exp(-10)) + 2 * math.log(math.exp(10) + 2)) / 5)
    assert r.ece == pytest.approx(0.4, abs=1e-4)
    scaled = Lookup()
    scaled.temperature = 0.5
    sharper = evaluate_tensors(scaled, x, y, list("abc"))
    assert "with the fitted temperature 0.5 (loss too)" in format_report(sharper)
    assert sharper.loss == pytest.approx((3 * math.log1p(2 * math.exp(-20)) + 2 * math.log(math.exp(20) + 2)) / 5)
    named = format_report(evaluate_tensors(Lookup(), x, y, ["cat", "dog", "longname-class"])).splitlines()
    matrix = named[named.index("confusion matrix (rows: true class, columns: predicted)") + 1:]
    assert [line.split() for line in matrix] == [["cat", "dog", "longname-class"], ["cat", "1", "1", "0"],
                                                 ["dog", "0", "1", "0"], ["longname-class", "1", "0", "1"]]
    assert len({len(line) for line in matrix}) == 1 and matrix[1].endswith(" 0")  # columns aligned, names apart
    members = [create_model("fast"), create_model("fast")]
    for m in members:
        m.temperature = 2.5
    vote = evaluate_tensors(Ensemble(members).eval(), torch.randn(6, 1, 28, 28), torch.arange(6), list("0123456789"))
    said = "(each member of the ensemble with its own temperature, where one was fitted)"
    assert vote.temperature is None and said in format_report(vote)
    assert vote.to_dict()["ece_uncalibrated"] is None  # its outputs hold its members' temperatures already


def test_shared_mistakes_counts_the_ensembles_mistakes_most_members_make():
    """Five images, three members: the ensemble misses images 0, 1 and 2; two members miss 0, one misses 1, all
    three miss 2, and two miss 3, which the ensemble gets right."""
    y = torch.tensor([0, 1, 2, 0, 1])

    def scored(pred: list[int]):  # evaluate_tensors' result for a model that answers `pred`
        return evaluate_tensors(Lookup(), torch.tensor(pred).float().view(-1, 1, 1, 1), y, list("abc"))

    assert scored([1, 2, 0, 0, 1]).predicted.tolist() == [1, 2, 0, 0, 1]
    members = [scored([1, 1, 0, 1, 1]), scored([2, 0, 1, 2, 1]), scored([0, 1, 1, 0, 1])]
    ensemble = scored([1, 2, 0, 0, 1])
    assert shared_mistakes(ensemble, members, y.numpy()) == 2  # images 0 and 2: not 1 (one member), nor 3 (right)
    assert shared_mistakes(ensemble, members[1:], y.numpy()) == 1  # of two, most is both: image 2, not image 0


def test_expected_calibration_error_by_hand():
    # Two answers at 90 % confidence, one right (a gap of 0.4); two at 62 %, both right (0.38): half the images each.
    probs = torch.tensor([[0.9, 0.1], [0.9, 0.1], [0.38, 0.62], [0.38, 0.62]])
    assert expected_calibration_error(probs, torch.tensor([0, 1, 1, 1])) == pytest.approx(0.39)
    assert expected_calibration_error(probs, torch.tensor([0, 0, 1, 1])) == pytest.approx((0.1 + 0.38) / 2)


def test_a_model_must_fit_the_data(tiny_dir):
    data = load_dataset("mnist", tiny_dir)
    with pytest.raises(ConfigError, match="takes 32×32 images, but mnist has 28×28"):
        evaluate(create_model("fast", input_size=(32, 32)), data)
    with pytest.raises(ConfigError, match="answers 5 classes, but mnist has 10"):
        evaluate(create_model("fast", num_classes=5), data)
    with pytest.raises(ConfigError, match="answers 5 classes"):
        fit(create_model("fast", num_classes=5), data, epochs=1, log=lambda m: None)
    with pytest.raises(ConfigError, match="split must be"):
        evaluate(create_model("fast"), data, split="val")
    fashion = create_model("fast")
    fashion.classes = ["T-shirt", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Boot"]
    with pytest.raises(ConfigError, match="answers the classes T-shirt, Trouser, Pullover, Dress, …, but mnist has "
                                          "0, 1, 2, 3, …: it was trained on other data"):
        evaluate(fashion, data)
    fashion.classes = [str(9 - d) for d in range(10)]  # the same names in another order count others' answers
    with pytest.raises(ConfigError, match="classes 9, 8, 7, 6"):
        evaluate(fashion, data)


@pytest.mark.parametrize("attribute, value, words", [
    ("mean", None, r"model.mean, model.std or model.temperature: mean must be a number, not None"),
    ("std", 0.0, r"model.mean, model.std or model.temperature: .* std in \[1e-4, 10\]"),
    ("temperature", 0.0, r"model.mean, model.std or model.temperature: .* temperature in \[1e-3, 1e3\]"),
    ("classes", None, r"model.classes: classes must be a list of num_classes \(10\) names"),
])
def test_settings_made_by_hand_are_named_when_wrong(tiny_dir, attribute, value, words):
    """None failed inside torch or Python ("NoneType is not iterable"); a 0 was blamed on the weights."""
    model = create_model("fast")
    setattr(model, attribute, value)
    with pytest.raises(ConfigError, match=words):
        evaluate(model, load_dataset("mnist", tiny_dir))


class Broken(nn.Module):
    """Gives `value`, 0, -`value` for the first image, zeros for the rest: weights gone NaN, or outputs too far apart
    for a float32 loss."""

    def __init__(self, value: float):
        super().__init__()
        self.value = value

    def forward(self, x):
        out = torch.zeros(len(x), 3)
        out[0] = torch.tensor([self.value, 0, -self.value])
        return out


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 3e38])
def test_non_finite_outputs_are_refused_not_reported_as_a_nan_loss(value):
    x, y = torch.zeros(4, 1, 1, 1), torch.tensor([2, 1, 2, 1])
    with pytest.raises(ModelError, match="non-finite outputs .* for 1 of 4 images"):
        evaluate_tensors(Broken(value), x, y, ["a", "b", "c"])
    r = evaluate_tensors(Broken(30.0), x, y, ["a", "b", "c"])  # large but finite: a real, JSON-safe result
    assert math.isfinite(r.loss) and json.dumps(r.to_dict(), allow_nan=False)


def test_a_mismatch_message_holds_for_any_image_shape(tiny_dir):
    data = load_dataset("mnist", tiny_dir)
    with pytest.raises(ConfigError, match="takes 28×28×3 images, but mnist has 28×28 images"):
        evaluate(create_model("fast", in_channels=3), data)
    # A Dataset checks its arrays when made, and again when used: one changed afterwards gets the same message
    data.train_x = data.train_x[:, None]
    with pytest.raises(DataError, match=r"shaped \(N, height, width\), at least 1×1 pixel, not \(600, 1, 28, 28\)"):
        evaluate(create_model("fast"), data)
    with pytest.raises(DataError, match="one-channel"):
        fit(create_model("fast"), data, epochs=1, log=lambda m: None)
    data.train_x, data.test_x = data.train_x[:, 0], None  # checked before the split is counted
    with pytest.raises(DataError, match="test images and labels must be numpy arrays, not NoneType"):
        evaluate(create_model("fast"), data)


def test_an_empty_split_is_a_clear_error(tiny_arrays):
    data = Dataset("tiny", **dict(tiny_arrays, test_x=tiny_arrays["test_x"][:0], test_y=tiny_arrays["test_y"][:0]))
    with pytest.raises(DataError, match="the test split of tiny holds no images: nothing to evaluate"):
        evaluate(create_model("fast"), data)
    assert evaluate(create_model("fast"), data, split="train").count == 600


def test_labels_of_another_integer_type_evaluate_as_int64(tiny_arrays):
    model = create_model("fast")
    as_int32, as_int64 = Dataset("tiny", **tiny_arrays), Dataset("tiny", **tiny_arrays)
    as_int32.test_y = tiny_arrays["test_y"].astype(np.uint8)  # set after the Dataset made its own int64 copy
    assert evaluate(model, as_int32).to_dict() == evaluate(model, as_int64).to_dict()


@pytest.mark.parametrize("swap, words", [
    ({"model": "runs/x"}, "the model must be one made by create_model or load_model, not 'runs/x'; load it with "
                          "load_model('runs/x')"),
    ({"model": nn.Linear(2, 2)}, "not a Linear"),
    ({"data": None}, "the data must be a Dataset, as load_dataset returns, not None"),
    ({"data": "mnist"}, "not 'mnist'; load it with load_dataset('mnist')"),
])
def test_evaluate_names_what_it_takes(tiny_dir, swap, words):
    args = {"model": create_model("fast"), "data": load_dataset("mnist", tiny_dir), **swap}
    with pytest.raises(ConfigError, match=re.escape(words)):
        evaluate(**args)
