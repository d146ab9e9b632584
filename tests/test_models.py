import re

import numpy as np
import pytest
import torch
from torch import nn

from convnet.errors import ConfigError, ImageError, ModelError
from convnet.infer import fold_batchnorm
from convnet.models import Ensemble, count_macs, create_model, get_spec, list_models


@pytest.mark.parametrize("name", list_models())
def test_forward_backward(name):
    model = create_model(name)
    x = torch.randn(4, 1, 28, 28, requires_grad=True)
    out = model(x)
    assert out.shape == (4, 10)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("name", list_models())
def test_other_shapes_and_classes(name):
    model = create_model(name, num_classes=3, in_channels=3, input_size=(32, 36))
    assert model(torch.randn(2, 3, 32, 36)).shape == (2, 3)


@pytest.mark.parametrize("name", list_models())
def test_recipe_and_description(name):
    spec = get_spec(name)
    assert spec.description and spec.recipe.epochs >= 1 and spec.recipe.lr > 0


def test_lesson_is_exactly_the_lessons_network():
    model = create_model("lesson")
    assert sum(p.numel() for p in model.parameters()) == 542_230  # what Keras reports for the lesson's model
    kinds = [type(m).__name__ for m in model]
    assert kinds == ["Conv2d", "MaxPool2d", "ReLU", "Flatten", "Linear", "ReLU", "Linear"]
    assert model[0].kernel_size == (3, 3) and model[0].out_channels == 32 and model[4].in_features == 5408
    assert get_spec("lesson").recipe.batch_size == 32 and get_spec("lesson").recipe.optimizer == "adam"


def test_lesson_pools_before_relu_without_changing_the_function():
    torch.manual_seed(0)
    model = create_model("lesson")
    conv, dense1, dense2 = model[0], model[4], model[6]
    as_taught = nn.Sequential(conv, nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), dense1, nn.ReLU(), dense2)
    x = torch.randn(16, 1, 28, 28)
    assert torch.equal(model(x), as_taught(x))


def test_macs_of_the_lesson():
    # conv: 26·26·32 outputs × 9; dense: 5408·100 + 100·10
    assert count_macs(create_model("lesson")) == 26 * 26 * 32 * 9 + 5408 * 100 + 100 * 10


def test_summary_table(capsys):
    create_model("lesson").summary()
    text = capsys.readouterr().out
    assert "conv2d (Conv2d)" in text and "(None, 32, 26, 26)" in text and "(None, 5408)" in text
    assert "linear_1 (Linear)" in text and "Total params: 542,230" in text


def test_a_network_too_large_for_memory_is_a_clear_error():
    """The lesson's dense layer grows with the image: torch said "can't allocate memory: you tried to allocate
    31998720012800 bytes"."""
    with pytest.raises(ConfigError, match="the 'lesson' network for 8000x8000 images does not fit in memory"):
        create_model("lesson", input_size=(8000, 8000))


@pytest.mark.parametrize("model", [create_model("fast"), Ensemble([create_model("fast"), create_model("fast")])])
def test_summary_takes_a_function(model):
    said: list[str] = []
    model.summary(print_fn=said.append)
    assert len(said) == 1 and "24,314" in said[0]  # the fast network's parameters
    with pytest.raises(ConfigError, match="print_fn must be a function that takes the text"):
        model.summary(print_fn=5)


def test_unknown_model_suggests():
    with pytest.raises(ModelError, match="Did you mean 'fast'"):
        create_model("fats")


def test_strided_downsamples_by_convolution_not_pooling():
    model = create_model("strided")
    assert not any(isinstance(m, nn.MaxPool2d) for m in model)
    strides = [m.stride for m in model if isinstance(m, nn.Conv2d)]
    assert strides.count((2, 2)) == 2
    features = nn.Sequential(*list(model)[:-4])(torch.zeros(1, 1, 28, 28))  # up to the global pooling
    assert features.shape == (1, 128, 7, 7)
    model.train()
    x = torch.randn(8, 1, 28, 28)
    assert not torch.equal(model(x), model(x))  # dropout is active in training…
    model.eval()
    assert torch.equal(model(x), model(x))  # …and off for inference


def test_nopad_says_which_inputs_are_too_small():
    assert create_model("nopad", input_size=(21, 21))(torch.randn(2, 1, 21, 21)).shape == (2, 10)
    with pytest.raises(ConfigError, match="at least 21 pixels"):
        create_model("nopad", input_size=(20, 28))


@pytest.mark.parametrize("name", list_models())
def test_batchnorm_folding_keeps_the_function(name):
    torch.manual_seed(0)
    model = create_model(name).eval()
    for m in model.modules():  # statistics and affine parameters far from their initial 0/1
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2.0)
            nn.init.normal_(m.weight)
            nn.init.normal_(m.bias)
    folded = fold_batchnorm(model)
    if name == "nopad":  # every BatchNorm follows a convolution or the linear layer, so none is left
        assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in folded.modules())
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), rtol=1e-4, atol=1e-4)


def test_batchnorm_folding_shares_the_card():
    from convnet.models import Ensemble

    members = [create_model("fast").eval() for _ in range(2)]
    for i, m in enumerate(members):
        m.mean, m.std, m.card = 0.1, 0.3, {"notes": [{} for _ in range(1000)], "member": i}
    ensemble = Ensemble(members)
    ensemble.card = {"notes": [{} for _ in range(1000)]}
    folded = fold_batchnorm(ensemble)
    # The same dicts: a card of many MiB once parsed is not held twice while `convnet predict` runs.
    assert folded.card is ensemble.card
    assert all(f.card is m.card for f, m in zip(folded.members, ensemble.members))
    assert folded.members[0] is not ensemble.members[0]  # the network itself is a copy, folded


@pytest.mark.parametrize("name", ["fast", "accurate"])  # strided pads enough to take even 1×1
def test_images_too_small_for_the_layers_are_refused_at_build(name):
    with pytest.raises(ConfigError, match=f"{name} cannot take 1×1 images"):
        create_model(name, input_size=(1, 1))


@pytest.mark.parametrize("size", [(1, 28), (28, 3), (1, 1)])
def test_the_lesson_needs_images_its_dense_layer_can_be_sized_for(size):
    """1×28 made a dense layer of negative size (a RuntimeError), 3×3 one of none (a warning), 1×1 of 32 inputs."""
    with pytest.raises(ConfigError, match=re.escape(f"lesson needs inputs of at least 4 pixels a side, got {size}")):
        create_model("lesson", input_size=size)
    assert create_model("lesson", input_size=(4, 4))(torch.zeros(2, 1, 4, 4)).shape == (2, 10)


@pytest.mark.parametrize("sizes, words", [
    ({"num_classes": "10"}, "num_classes must be a whole number of at least 1, not '10'"),
    ({"num_classes": -1}, "num_classes must be a whole number of at least 1, not -1"),
    ({"in_channels": True}, "in_channels must be a whole number of at least 1, not True"),
    ({"num_classes": 100_001}, "at most 100,000 classes and 4 image channels, not num_classes=100,001"),  # unloadable
    ({"in_channels": 5}, "at most 100,000 classes and 4 image channels, not num_classes=10 and in_channels=5"),
    ({"input_size": 28}, "input_size must be (height, width) in whole pixels, 1 to 8,192, e.g. (28, 28); not 28"),
    ({"input_size": (100_000, 100_000)}, "not (100000, 100000)"),  # a model that could not be loaded
    ({"input_size": ("a", "b")}, "not ('a', 'b')"),
    ({"input_size": (28, 28, 1)}, "not (28, 28, 1)"),
])
def test_sizes_of_the_wrong_kind_are_named(sizes, words):
    with pytest.raises(ConfigError, match=re.escape(words)):
        create_model("fast", **sizes)


def test_numpy_sizes_become_plain_ints():
    model = create_model("fast", num_classes=np.int64(10), input_size=np.array([28, 28]))
    assert type(model.num_classes) is int and model.input_size == (28, 28)
    assert all(type(side) is int for side in model.input_size)


def test_summary_and_macs_follow_the_model_to_its_dtype_and_device():
    # A blank image of the default float32 on the CPU failed on a model in float64 (or on a GPU, after fit there).
    model = create_model("lesson").double()
    lines = []
    model.summary(print_fn=lines.append)
    assert "Total params: 542,230" in lines[0]
    assert count_macs(model) == count_macs(create_model("lesson"))


def _calibrated(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    model = create_model("fast").eval()
    model.mean, model.std, model.temperature = 0.13, 0.31, 1.7
    return model


def test_predict_normalises_and_calibrates_as_fit_and_evaluate_do():
    model = _calibrated(0)
    pixels = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    x = (torch.from_numpy(pixels).float().unsqueeze(1) / 255 - 0.13) / 0.31
    with torch.no_grad():
        expected = torch.softmax(model(x) / 1.7, 1).numpy()
    probs = model.predict(pixels)
    assert probs.shape == (5, 10) and np.allclose(probs, expected, atol=1e-5)
    # The same images in every layout taken, as floats in [0, 1] and as a tensor, and one image alone.
    for same in (pixels / 255, pixels[:, None], pixels[..., None], pixels.reshape(5, 784), torch.from_numpy(pixels)):
        assert np.allclose(model.predict(same), expected, atol=1e-5)
    assert np.allclose(model.predict(pixels[2]), expected[2:3], atol=1e-5)
    assert model.predict(pixels[:0]).shape == (0, 10)


def test_an_ensemble_predicts_its_members_average():
    a, b = _calibrated(1), _calibrated(2)
    pixels = np.random.default_rng(1).integers(0, 256, (4, 28, 28), dtype=np.uint8)
    assert np.allclose(Ensemble([a, b]).predict(pixels), (a.predict(pixels) + b.predict(pixels)) / 2, atol=1e-5)


def test_predict_takes_resampling_overshoot_and_refuses_settings_and_weights_it_cannot_use():
    model = _calibrated(0)
    pixels = np.random.default_rng(2).random((3, 28, 28))
    assert np.allclose(model.predict(pixels * 1.2), model.predict(np.clip(pixels * 1.2, 0, 1)))  # as preprocess does
    model.temperature = -1.0  # set by hand: it would rank the classes the wrong way round
    with pytest.raises(ConfigError, match="model.temperature"):
        model.predict(pixels)
    model.temperature = 1.0
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))
    with pytest.raises(ModelError, match="non-finite outputs"):
        model.predict(pixels)


@pytest.mark.parametrize("images, words", [
    (np.full((2, 28, 28), 200.0), "divide them by 255"),  # pixels 0..255 as floats
    (np.full((2, 28, 28), -0.4), "predict applies the model's normalisation"),  # normalised already
    (np.full((2, 28, 28), np.nan), "NaN"),
    (np.full((2, 28, 28), 300), "integer pixels must be 0..255"),
    (np.zeros((2, 27, 27)), r"\(N, 28, 28\), \(N, 1, 28, 28\), \(N, 28, 28, 1\) or \(N, 784\), not \(2, 27, 27\)"),
    (np.full((2, 28, 28), "a"), "not <U1 values"),
    (torch.zeros(2, 28, 28, device="meta"), "cannot read a torch.float32 tensor on meta"),  # no data to read
])
def test_predict_names_the_mistake_in_the_images(images, words):
    with pytest.raises(ImageError, match=words):
        _calibrated(0).predict(images)
