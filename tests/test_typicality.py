"""Typicality: inputs unlike the training images are told apart from the features before the last layer."""
import json
from importlib import import_module
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import synthetic_arrays, write_idx_folder
from PIL import Image, ImageDraw, ImageFont

from convnet import checkpoint
from convnet.calibrate import detach_typicality, fit_typicality, typical_distance
from convnet.data import load_dataset, to_tensor
from convnet.errors import ConfigError, ModelError
from convnet.infer import UNLIKE, Recognizer, _Prepared
from convnet.models import Ensemble, create_model
from convnet.train import fit

EXAMPLES = Path(__file__).parent.parent / "examples"
FONT = next(Path("/usr/share/fonts").rglob("DejaVuSans.ttf"), None)


def trained(data, seed: int = 0):
    torch.manual_seed(seed)
    model = create_model("fast")
    fit(model, data, epochs=3, batch_size=32, lr=0.02, seed=seed, log=lambda m: None)
    return model


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    data = load_dataset("mnist", write_idx_folder(tmp_path_factory.mktemp("idx"), synthetic_arrays()))
    return data, trained(data, 0), trained(data, 1)


def distances(model, images: np.ndarray) -> torch.Tensor:
    """Each uint8 image's distance over the threshold, as Recognizer measures it."""
    found = []
    hook = model[-1].register_forward_pre_hook(lambda _, inputs: found.append(inputs[0]))
    with torch.inference_mode():
        model.eval()(to_tensor(images, model.mean, model.std))
    hook.remove()
    return typical_distance(model, found[0])


def unlike_squares(n: int = 50) -> np.ndarray:
    """Images of the synthetic set's kind of noise with no bright square: a bright bar across the middle."""
    x = np.random.default_rng(5).integers(0, 60, size=(n, 28, 28)).astype(np.uint8)
    x[:, 12:16, 2:26] = 230
    return x


def answers(rec: Recognizer, *readings: np.ndarray) -> list:
    """The answers for images as `preprocess.readings` gives them (1 x 28 x 28 in [0, 1]), one digit each."""
    return rec._answers([None] * len(readings), [_Prepared(r, 1) for r in readings])


def test_training_fits_a_threshold_that_keeps_the_training_images_and_turns_away_others(tiny_models):
    data, model, _ = tiny_models
    record = model.typicality
    assert record["quantile"] == 0.999 and record["features"] == 64 and record["threshold"] > 0
    assert record["fitted_on"] == "training images (600)"
    assert float((distances(model, data.train_x) > 1).float().mean()) <= 0.002  # the 99.9th percentile: one image
    assert float((distances(model, data.test_x) > 1).float().mean()) <= 0.05  # unseen images of the same kind
    assert bool((distances(model, unlike_squares()) > 1).all())


def test_a_saved_model_keeps_its_typicality_and_predict_withholds_the_answer(tiny_models, tmp_path):
    data, model, _ = tiny_models
    checkpoint.save_model(model, tmp_path / "m")
    card = json.loads((tmp_path / "m" / "model.json").read_text())
    assert card["typicality"] == model.typicality
    loaded = checkpoint.load_model(tmp_path / "m")
    assert loaded.typicality == model.typicality
    assert torch.equal(loaded.typical_whiten, model.typical_whiten)
    odd, usual = unlike_squares(1)[0], data.test_x[0]
    rec = Recognizer(loaded, min_confidence=0.01)
    bar = answers(rec, odd[None] / 255.0, usual[None] / 255.0)
    assert bar[0].label is None and bar[0].reason == UNLIKE and bar[0].top_k  # the guess is still shown
    assert bar[1].label == str(data.test_y[0])
    everything = answers(Recognizer(loaded, min_confidence=0), odd[None] / 255.0)  # 0: every answer
    assert everything[0].label is not None


def test_an_ensemble_asks_its_members_and_skips_the_check_if_one_has_none(tiny_models, tmp_path):
    data, first, second = tiny_models
    checkpoint.save_model(Ensemble([first, second]), tmp_path / "e")
    card = json.loads((tmp_path / "e" / "model.json").read_text())
    assert [m["typicality"] for m in card["members"]] == [first.typicality, second.typicality]
    ensemble = checkpoint.load_model(tmp_path / "e")
    rec = Recognizer(ensemble, min_confidence=0.01)
    given = answers(rec, unlike_squares(1) / 255.0, data.test_x[:1] / 255.0)
    assert given[0].reason == UNLIKE and given[1].label == str(data.test_y[0])
    plain = create_model("fast")
    plain.load_state_dict({k: v for k, v in second.state_dict().items() if not k.startswith("typical_")})
    plain.mean, plain.std = second.mean, second.std
    mixed = Recognizer(Ensemble([first, plain]), min_confidence=0.01)
    assert answers(mixed, unlike_squares(1) / 255.0)[0].reason != UNLIKE


def test_training_again_drops_an_old_typicality_and_ctrl_c_in_the_fit_drops_the_new_one(tiny_models, monkeypatch):
    data, _, _ = tiny_models
    again = create_model("fast")
    fit_typicality(again, to_tensor(data.train_x, 0.1, 0.3), torch.from_numpy(data.train_y))
    old = again.typicality
    trainer = import_module("convnet.train")
    real_fit = trainer.fit_typicality
    seen = []

    def fit_then_stop(model, *args, **kwargs):
        seen.append(model.typicality)  # what the model held when the new fit began
        real_fit(model, *args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "fit_typicality", fit_then_stop)
    history = fit(again, data, epochs=1, batch_size=32, log=lambda m: None)
    assert old is not None and seen == [None]
    assert history.interrupted and again.typicality is None and "typical_whiten" not in again.state_dict()


def test_typicality_needs_every_class_and_enough_images(tiny_models):
    data, _, _ = tiny_models
    model = create_model("fast")
    x, y = to_tensor(data.train_x, 0.1, 0.3), torch.from_numpy(data.train_y)
    assert fit_typicality(model, x, y) is not None
    assert fit_typicality(model, x[y != 3], y[y != 3]) is None  # no 3 to measure a 3 against
    assert model.typicality is None and "typical_whiten" not in model.state_dict()  # the old one went too
    assert fit_typicality(model, x[:100], y[:100]) is None  # 100 images for 64 features
    assert model.typicality is None and fit_typicality(create_model("nopad"), x, y) is None  # 5,120 features
    detach_typicality(model)  # nothing to drop: no error
    assert fit_typicality(model, x, y) is not None
    wider = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for images, labels in [(x, y[:10]), (x, y + 5), (x, y.float()), (x, y > 4), (data.train_x, y), (x, list(y)),
                           (x[:, 0], y), (x.long(), y), (wider, y), (x.expand(-1, 3, -1, -1), y)]:
        with pytest.raises(ConfigError, match=r"fit_typicality takes the images as one float tensor \(N, 1, 28, 28\)"):
            fit_typicality(model, images, labels)
        assert model.typicality is not None  # refused inputs leave the one fitted before
    fitted = model.typicality
    assert fit_typicality(model, x.double(), y) == fitted  # any float type: the network's own is used
    assert fit_typicality(model, x.half(), y) is not None
    with pytest.raises(ConfigError, match="batch_size must be a whole number"):
        fit_typicality(model, x, y, batch_size=0)
    assert fit_typicality(model, x[:0], y[:0]) is None  # no images: nothing to fit
    assert fit_typicality(model, x, y.to(torch.uint8)) is not None  # labels of any integer type


def test_a_fit_that_fails_on_the_way_keeps_the_typicality_fitted_before(tiny_models, monkeypatch):
    data, _, _ = tiny_models
    model = create_model("fast")
    x, y = to_tensor(data.train_x, 0.1, 0.3), torch.from_numpy(data.train_y)
    fitted = fit_typicality(model, x, y)

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(model, "forward_with_features", interrupted)
    with pytest.raises(KeyboardInterrupt):
        fit_typicality(model, x, y)
    assert fitted is not None and model.typicality == fitted and "typical_whiten" in model.state_dict()


def test_features_that_do_not_vary_give_no_typicality_and_no_crash(tiny_models):
    data, _, _ = tiny_models
    model = create_model("lesson")
    y = torch.from_numpy(data.train_y)
    assert fit_typicality(model, torch.zeros(len(y), 1, 28, 28), y) is None  # every image alike: no spread
    with torch.no_grad():
        model[4].bias.fill_(-1e4)  # the hidden layer dead: its features all 0
    assert fit_typicality(model, to_tensor(data.train_x, 0.1, 0.3), y) is None and model.typicality is None
    with pytest.raises(ConfigError, match="for an ensemble, fit each of its members"):
        fit_typicality(Ensemble([create_model("fast"), create_model("fast")]), to_tensor(data.train_x, 0.1, 0.3), y)


def test_a_fitted_model_takes_other_weights_in_place(tiny_models, tmp_path):
    data, model, other = tiny_models
    again = create_model("fast")
    again.load_state_dict(model.state_dict(), strict=False)
    fit_typicality(again, to_tensor(data.train_x, model.mean, model.std), torch.from_numpy(data.train_y))
    again.load_state_dict(other.state_dict())  # ordinary tensors, not inference-mode ones, can be written over
    assert torch.equal(again.typical_whiten, other.typical_whiten)


def test_save_model_refuses_a_typicality_it_could_not_load_again(tiny_models, tmp_path):
    _, model, _ = tiny_models
    plain = create_model("fast")
    plain.mean, plain.std = model.mean, model.std
    for record in [{"threshold": 1.0}, {"threshold": 0}, {"threshold": float("nan")}, {"threshold": "1"}, "yes", {}]:
        plain.typicality = record  # a record without the tensors, or a threshold that makes no sense
        with pytest.raises(ConfigError, match="model.typicality: "):
            checkpoint.save_model(plain, tmp_path / "m")
        with pytest.raises(ConfigError, match=r"model.members\[1\].typicality: "):
            checkpoint.save_model(Ensemble([model, plain]), tmp_path / "e")
    assert not (tmp_path / "m").exists() and not (tmp_path / "e").exists()


def test_an_ensemble_card_with_a_typicality_of_its_own_is_refused(tiny_models, tmp_path):
    _, first, second = tiny_models
    checkpoint.save_model(Ensemble([first, second]), tmp_path / "e")
    card = json.loads((tmp_path / "e" / "model.json").read_text())
    (tmp_path / "e" / "model.json").write_text(json.dumps({**card, "typicality": first.typicality}))
    with pytest.raises(ModelError, match="an ensemble's typicality is its members'"):
        checkpoint.load_model(tmp_path / "e")


def test_the_same_network_with_and_without_a_typicality_is_the_same_member(tiny_models, tmp_path):
    _, model, _ = tiny_models
    plain = create_model("fast")
    plain.load_state_dict(model.state_dict(), strict=False)
    plain.mean, plain.std, plain.temperature = model.mean, model.std, model.temperature
    checkpoint.save_model(model, tmp_path / "a")
    checkpoint.save_model(plain, tmp_path / "b")
    with pytest.raises(ModelError, match="are the same model"):
        checkpoint.build_ensemble([tmp_path / "a", tmp_path / "b"])


def test_threads_sharing_a_recognizer_get_their_own_answers():
    from concurrent.futures import ThreadPoolExecutor

    rec = Recognizer.load()
    digits = [str(p) for p in sorted((EXAMPLES / "digits").glob("*.*"))]
    letters = []
    for letter in "AWX":
        img = Image.new("L", (120, 120), 255)
        ImageDraw.Draw(img).text((20, 5), letter, font=ImageFont.truetype(str(FONT), 90), fill=0)
        letters.append(np.asarray(img))
    jobs = [digits, letters] * 20
    alone = [[(p.label, p.reason) for p in rec.predict(job)] for job in jobs[:2]] * 20
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda job: [(p.label, p.reason) for p in rec.predict(job)], jobs))
    assert together == alone


@pytest.mark.parametrize("record", [{"threshold": -1}, {"threshold": "big"}, {"quantile": 0.999}, [1, 2]])
def test_a_card_with_a_broken_typicality_is_refused(tiny_models, tmp_path, record):
    _, model, _ = tiny_models
    checkpoint.save_model(model, tmp_path / "m")
    card_path = tmp_path / "m" / "model.json"
    card = json.loads(card_path.read_text())
    card_path.write_text(json.dumps({**card, "typicality": record}))
    with pytest.raises(ModelError, match="typicality"):
        checkpoint.load_model(tmp_path / "m")


def test_a_card_that_claims_a_typicality_its_weights_lack_is_refused(tiny_models, tmp_path):
    _, model, _ = tiny_models
    checkpoint.save_model(model, tmp_path / "m")
    card = json.loads((tmp_path / "m" / "model.json").read_text())
    plain = create_model("fast")
    checkpoint.save_model(plain, tmp_path / "plain")
    plain_card = json.loads((tmp_path / "plain" / "model.json").read_text())
    (tmp_path / "plain" / "model.json").write_text(json.dumps({**plain_card, "typicality": card["typicality"]}))
    with pytest.raises(ModelError, match="typical_centres is missing; typical_whiten is missing"):
        checkpoint.load_model(tmp_path / "plain")
    checkpoint.save_model(model, tmp_path / "m", overwrite=True)
    assert checkpoint.load_model(tmp_path / "m").typicality == model.typicality  # where it is, it loads


@pytest.mark.skipif(FONT is None, reason="needs the DejaVu fonts")
def test_the_shipped_model_withholds_letters_and_still_reads_the_examples():
    rec = Recognizer.load()
    assert rec.model.typicality["quantile"] == 0.999
    letters = []
    for letter in "AHKMNWX":
        img = Image.new("L", (120, 120), 255)
        ImageDraw.Draw(img).text((20, 5), letter, font=ImageFont.truetype(str(FONT), 90), fill=0)
        letters.append(np.asarray(img))
    withheld = [p.reason == UNLIKE for p in rec.predict(letters)]
    assert sum(withheld) >= 4, withheld
    examples = sorted((EXAMPLES / "digits").glob("*.*"))
    assert [p.label for p in rec.predict([str(p) for p in examples])] == [p.name.split("-")[0] for p in examples]


def test_evaluate_counts_the_images_predict_would_withhold(tiny_models):
    from convnet.evaluate import evaluate, format_report

    data, model, _ = tiny_models
    odd = load_dataset("mnist", write_idx_folder(Path("odd"), {**synthetic_arrays(), "test_x": unlike_squares(200)}))
    usual, strange = evaluate(model, data), evaluate(model, odd)
    assert usual.unlike <= 10 and strange.unlike == 200 and 0 < strange.unlike_wrong <= 200
    assert strange.to_dict()["unlike_training_images"] == {"count": 200, "misclassified": strange.unlike_wrong}
    assert f"unlike the training images: 200 of 200 (100.00%), {strange.unlike_wrong} of them" in format_report(strange)
    plain = evaluate(create_model("fast"), data)  # no typicality: nothing to count, nothing said
    assert plain.unlike is None and plain.to_dict()["unlike_training_images"] is None
    assert "unlike" not in format_report(plain)


@pytest.mark.skipif(FONT is None, reason="needs the DejaVu fonts")
def test_read_says_why_a_number_has_no_answer():
    six = Image.open(EXAMPLES / "digits" / "6-uci-dark-on-light-l.png").convert("L").resize((90, 90))
    rec = Recognizer.load()
    said = []
    for letter in "AWX":
        img = Image.new("L", (300, 120), 255)
        img.paste(six, (20, 15))
        ImageDraw.Draw(img).text((150, 5), letter, font=ImageFont.truetype(str(FONT), 90), fill=0)
        reading = rec.read(np.asarray(img))
        assert reading.number is None and [d.label for d in reading.digits] == ["6", None]
        said.append(reading.reason)
    assert said == [UNLIKE] * 3
