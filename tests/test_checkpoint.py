import json

import pytest
import torch

from convnet.checkpoint import load_model, resolve, save_model
from convnet.errors import ModelError
from convnet.models import create_model


def _trained_like(name="fast"):
    torch.manual_seed(1)
    model = create_model(name)
    with torch.no_grad():  # give BN non-default statistics so the round trip covers buffers too
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
    model.mean, model.std, model.classes = 0.2, 0.3, list("abcdefghij")
    return model.eval()


@pytest.mark.parametrize("name", ["fast", "lesson"])
def test_round_trip_gives_identical_predictions(tmp_path, name):
    model = _trained_like(name)
    save_model(model, tmp_path / "run", metrics={"test_accuracy": 0.5})
    loaded = load_model(tmp_path / "run")
    x = torch.randn(8, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert loaded.classes == list("abcdefghij") and (loaded.mean, loaded.std) == (0.2, 0.3)
    assert loaded.card["metrics"]["test_accuracy"] == 0.5 and loaded.card["versions"]["torch"]


def test_all_three_ways_to_name_a_model(tmp_path):
    save_model(_trained_like(), tmp_path / "run")
    for ref in (tmp_path / "run", tmp_path / "run" / "model.safetensors", tmp_path / "run" / "model.json"):
        assert resolve(ref) == (tmp_path / "run" / "model.safetensors", tmp_path / "run" / "model.json")
    with pytest.raises(ModelError, match="not a run folder, a model file"):
        resolve("no-such-model")


def test_a_pickle_is_never_loaded(tmp_path):
    run = tmp_path / "run"
    save_model(_trained_like(), run)
    torch.save(create_model("fast").state_dict(), run / "model.safetensors")  # a pickle in disguise
    with pytest.raises(ModelError, match="corrupt"):
        load_model(run)


def test_card_problems_are_clear(tmp_path):
    run = tmp_path / "run"
    save_model(_trained_like(), run)
    card = json.loads((run / "model.json").read_text())
    (run / "model.json").write_text(json.dumps({**card, "architecture": "lesson"}))
    with pytest.raises(ModelError, match="do not fit the 'lesson' architecture"):
        load_model(run)
    (run / "model.json").write_text("{not json")
    with pytest.raises(ModelError, match="not a readable model card"):
        load_model(run)
    (run / "model.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(ModelError, match="not a convnet model card"):
        load_model(run)
    (run / "model.json").unlink()
    with pytest.raises(ModelError, match="missing model.json"):
        load_model(run)


def test_ensemble_round_trip_and_vote(tmp_path):
    from convnet.checkpoint import build_ensemble
    from convnet.models import Ensemble

    members = []
    for seed, temperature in ((1, 1.0), (2, 0.5)):
        torch.manual_seed(seed)
        model = _trained_like("fast")
        model.temperature = temperature
        save_model(model, tmp_path / f"m{seed}")
        members.append(model)
    ensemble = build_ensemble([tmp_path / "m1", tmp_path / "m2"])
    x = torch.randn(5, 1, 28, 28)
    with torch.no_grad():
        expected = (torch.softmax(members[0](x), 1) + torch.softmax(members[1](x) / 0.5, 1)) / 2
        assert torch.allclose(ensemble(x).exp(), expected, atol=1e-6)
        save_model(ensemble, tmp_path / "vote")
        loaded = load_model(tmp_path / "vote")
        assert isinstance(loaded, Ensemble) and len(loaded.members) == 2
        assert torch.allclose(loaded(x), ensemble(x)) and loaded.members[1].temperature == 0.5


def test_ensemble_members_must_match(tmp_path):
    from convnet.checkpoint import build_ensemble

    a, b = _trained_like(), _trained_like()
    b.mean = 0.9
    save_model(a, tmp_path / "a")
    save_model(b, tmp_path / "b")
    with pytest.raises(ModelError, match="share classes"):
        build_ensemble([tmp_path / "a", tmp_path / "b"])
    with pytest.raises(ModelError, match="at least two"):
        build_ensemble([tmp_path / "a"])


@pytest.mark.parametrize("change, words", [
    ({"num_classes": -3}, "num_classes -3"),
    ({"num_classes": 10**12}, "out of range"),
    ({"classes": list("abcde")}, "classes must be a list of num_classes"),
    ({"classes": {"a": 1}}, "classes must be a list"),
    ({"input_size": [-28, 28]}, "input_size"),
    ({"input_size": "28"}, "input_size"),
    ({"temperature": 0}, "temperature"),
    ({"preprocessing": {"mean": 0.1, "std": 0}}, "std"),
    ({"preprocessing": {"mean": float("nan"), "std": 0.3}}, "finite"),
])
def test_nonsense_card_values_are_refused(tmp_path, change, words):
    run = tmp_path / "run"
    save_model(_trained_like(), run)
    card = json.loads((run / "model.json").read_text())
    (run / "model.json").write_text(json.dumps({**card, **change}))
    with pytest.raises(ModelError, match=f"invalid model card .*{words}"):
        load_model(run)


def test_a_deeply_nested_card_is_refused(tmp_path):
    run = tmp_path / "run"
    save_model(_trained_like(), run)
    (run / "model.json").write_text("[" * 100_000)
    with pytest.raises(ModelError, match="not a readable model card"):
        load_model(run)


def test_an_ensemble_is_not_a_member(tmp_path):
    from convnet.checkpoint import build_ensemble

    for seed in (1, 2):
        save_model(_trained_like(), tmp_path / f"m{seed}")
    save_model(build_ensemble([tmp_path / "m1", tmp_path / "m2"]), tmp_path / "vote")
    with pytest.raises(ModelError, match="is itself an ensemble; list its members"):
        build_ensemble([tmp_path / "vote", tmp_path / "m1"])
    with pytest.raises(ModelError, match="a list of models"):
        build_ensemble(str(tmp_path / "m1"))
