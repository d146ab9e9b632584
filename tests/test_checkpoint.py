import json
import os
import re
import resource
import shutil
from pathlib import Path, PurePosixPath

import pytest
import torch

from convnet.checkpoint import load_model, resolve, save_model
from convnet.errors import ConfigError, ModelError
from convnet.models import Ensemble, create_model


def _trained_like(name="fast", seed=1):
    torch.manual_seed(seed)
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
    with pytest.raises(ModelError, match=r"not a run folder, a model file .* \(shipped: default\)\.$"):
        resolve("no-such-model")
    with pytest.raises(ModelError, match=re.escape("lesson is an architecture: `convnet train --model lesson` trains "
                                                   "one, create_model('lesson') builds one untrained.")):
        resolve("lesson")


@pytest.mark.parametrize("make, words", [
    (os.mkfifo, "model.json is a folder, a pipe or a device, not a file"),  # a pipe, which no one reads: no hang
    (os.mkdir, "model.json is a folder, a pipe or a device, not a file"),
    (lambda p: os.symlink(p.parent / "gone.json", p), "model.json is a link to .*gone.json, which does not exist"),
    # Path.exists calls a loop of links not existing too: "a link to a.json, which does not exist", with a.json there
    (lambda p: os.symlink(p.name, p), "model.json is a link to model.json, which leads back to itself .a loop"),
    (lambda p: (os.symlink(p.name, p.parent / "a.json"), os.symlink("a.json", p)),
     "model.json is a link to a.json, which leads back to itself .a loop of links"),
])
def test_a_card_that_is_not_a_file_is_not_called_missing(tmp_path, make, words):
    run = tmp_path / "run"
    save_model(_trained_like(), run)
    (run / "model.json").unlink()
    make(run / "model.json")  # `ls` shows it: "missing model.json" sent the user looking for a file that is there
    for ref in (run, run / "model.safetensors"):
        with pytest.raises(ModelError, match=words):
            resolve(ref)


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
    with pytest.raises(ModelError, match=r"member 2 \(fast\) has normalisation \(mean, std\) \(0.9, 0.3\), not "
                       r"\(0.2, 0.3\) \(models trained on other data"):
        build_ensemble([tmp_path / "a", tmp_path / "b"])
    untrained = create_model("fast")
    untrained.classes = a.classes
    for members, which in (([a, untrained], 2), ([untrained, a], 1)):  # named, first or not
        with pytest.raises(ModelError, match=rf"ensemble members are trained networks: member {which} \(fast\) is "
                                             "untrained"):
            Ensemble(members)
    b.mean, b.classes = a.mean, tuple(a.classes)  # the same names in a tuple are the same classes
    Ensemble([a, b])
    with pytest.raises(ModelError, match="at least two"):
        build_ensemble([tmp_path / "a"])
    c = _trained_like()
    c.temperature = 1.5  # a model of its own, though of the same weights as a
    save_model(c, tmp_path / "c")
    (tmp_path / "x").mkdir()
    shutil.copytree(tmp_path / "c", tmp_path / "copy")
    for same in (tmp_path / "c", tmp_path / "c" / "model.json", tmp_path / "x" / ".." / "c" / "model.safetensors",
                 tmp_path / "copy"):
        with pytest.raises(ModelError, match=re.escape(f"{same} and {tmp_path / 'c'} are the same model")):
            build_ensemble([tmp_path / "c", tmp_path / "a", same])


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
    # Finite and positive, yet NaN answers: logits / 1e-45 overflow, and so do pixels / 1e-300.
    ({"temperature": 1e-45}, "temperature in \\[1e-3, 1e3\\]"),
    ({"temperature": 1e6}, "temperature in"),
    ({"preprocessing": {"mean": 0.1, "std": 1e-300}}, "std in \\[1e-4, 10\\]"),
    ({"preprocessing": {"mean": 1e300, "std": 0.3}}, "mean"),
    ({"preprocessing": {"mean": 10**400, "std": 0.3}}, "too large"),
    # JSON's true and "0.1" are no numbers, though float() takes them.
    ({"preprocessing": {"mean": True, "std": 0.3}}, "mean must be a number, not True"),
    ({"preprocessing": {"mean": "0.1", "std": 0.3}}, "mean must be a number, not '0.1'"),
    ({"preprocessing": {"mean": 0.1, "std": None}}, "std must be a number, not None"),
    ({"temperature": True}, "temperature must be a number"),
    ({"preprocessing": None}, "preprocessing must hold the mean and std, not None"),  # not "'NoneType' object is …"
    # Answers are told apart, and `convnet predict` prints them one a line, by their class names.
    ({"classes": list(range(10))}, "class names must be strings, not int"),
    ({"classes": ["a"] * 10}, "class name 'a' is given more than once"),
    *(({"classes": [bad, *"bcdefghij"]}, "is blank or holds a line break or control character")
      for bad in ("", " ", "a\nb", "a\tb", "a\x85b", "a\u2028b", "\ud800")),
])
def test_nonsense_card_values_are_refused(tmp_path, change, words):
    run = tmp_path / "run"
    save_model(_trained_like(), run)
    card = json.loads((run / "model.json").read_text())
    (run / "model.json").write_text(json.dumps({**card, **change}))
    with pytest.raises(ModelError, match=f"invalid model card .*{words}"):
        load_model(run)


@pytest.mark.parametrize("field", ["architecture", "classes", "num_classes"])
def test_a_card_without_a_field_names_it(tmp_path, field):
    run = tmp_path / "run"
    save_model(_trained_like(), run)
    card = json.loads((run / "model.json").read_text())
    del card[field]
    (run / "model.json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match=f"model.json: incomplete model card \\(it has no '{field}' field\\)"):
        load_model(run)


def test_a_deeply_nested_card_is_refused(tmp_path):
    run = tmp_path / "run"
    save_model(_trained_like(), run)
    (run / "model.json").write_text("[" * 100_000)
    with pytest.raises(ModelError, match="not a readable model card"):
        load_model(run)


def test_a_card_nested_too_deep_to_copy_is_refused(tmp_path):
    from convnet.infer import Recognizer

    # 1 kB of JSON, parsed fine, but the Recognizer's copy of the model (copy.deepcopy, two calls a level) blew
    # Python's stack: a RecursionError with its traceback from `convnet predict` and `convnet read`.
    run = tmp_path / "run"
    save_model(_trained_like(), run)
    card = json.loads((run / "model.json").read_text())
    (run / "model.json").write_text(json.dumps(card)[:-1] + ', "notes": ' + "[" * 600 + "]" * 600 + "}")
    for load in (load_model, Recognizer.load):
        with pytest.raises(ModelError, match="not a readable model card .lists and dicts nested more than 100 deep"):
            load(run)
    # What save_model writes, load_model reads: a card it would refuse is not written.
    def nested(depth: int) -> list:
        value: list = []
        for _ in range(depth - 1):
            value = [value]
        return value

    deep = nested(100)
    for notes in (deep, nested(5000)):  # the second, too deep for json.dumps itself
        with pytest.raises(ConfigError, match="nests lists and dicts more than 100 deep"):
            save_model(_trained_like(), tmp_path / "deep", notes=notes)
    assert not (tmp_path / "deep" / "model.json").exists()
    save_model(_trained_like(), tmp_path / "deep", notes=deep[0])  # with the card around them, 100 deep
    assert load_model(tmp_path / "deep").card["notes"] == deep[0]


def test_a_card_nested_too_deep_in_tuples_is_not_written(tmp_path):
    # JSON writes a tuple as a list, which load_model counts: saved, this card could not be loaded again.
    notes: tuple = ()
    for _ in range(150):
        notes = (notes,)
    with pytest.raises(ConfigError, match="nests lists and dicts more than 100 deep"):
        save_model(_trained_like(), tmp_path / "deep", notes=notes)
    assert not (tmp_path / "deep" / "model.json").exists()


def test_a_huge_card_is_not_parsed(tmp_path):
    run = tmp_path / "run"
    save_model(_trained_like(), run)
    (run / "model.json").write_text("[" + "{}," * 6_000_000 + "{}]")  # 18 MB of text, about 400 MB once parsed
    with pytest.raises(ModelError, match="not a readable model card .larger than 16 MiB"):
        load_model(run)


def test_an_ensemble_is_not_a_member(tmp_path):
    from convnet.checkpoint import build_ensemble

    for seed in (1, 2):
        save_model(_trained_like(seed=seed), tmp_path / f"m{seed}")
    save_model(build_ensemble([tmp_path / "m1", tmp_path / "m2"]), tmp_path / "vote")
    with pytest.raises(ModelError, match="is itself an ensemble; list the models it was made from"):
        build_ensemble([tmp_path / "vote", tmp_path / "m1"])
    with pytest.raises(ModelError, match="a list of models"):
        build_ensemble(str(tmp_path / "m1"))


def test_an_ensemble_made_in_memory_refuses_what_it_could_not_save_or_load(tmp_path):
    a, b = _trained_like(seed=1), _trained_like(seed=2)
    vote = Ensemble(m for m in (a, b))  # any iterable of members
    for members, words in [
        ([vote, a], "cannot hold another ensemble"),  # saved, it would not load again
        ([a, a], "listed twice"),  # safetensors refuses tensors that share memory
        ([str(tmp_path / "m1"), str(tmp_path / "m2")], "trained models, not str .*load it with load_model first"),
        (a, "a list of trained models, not Network"),
        (5, "a list of trained models, not int"),
    ]:
        with pytest.raises(ModelError, match=words):
            Ensemble(members)
    lines = []
    vote.summary(print_fn=lines.append)
    table = lines[0].splitlines()
    assert table[0].startswith("ensemble of 2 models") and len(table) == 4
    n = sum(p.numel() for p in a.parameters())
    assert f"1. {a.arch}" in table[1] and f"{n:,} parameters" in table[1]
    assert table[3] == f"total parameters: {2 * n:,}"


def _edit_card(run, change):
    card = json.loads((run / "model.json").read_text())
    change(card)
    (run / "model.json").write_text(json.dumps(card))


def test_a_card_cannot_make_loading_build_a_huge_network(tmp_path):
    # The lesson's dense layer grows with the input: 8192×8192 would be 214 GB of weights for a 2 MB file.
    save_model(_trained_like("lesson"), tmp_path / "lesson")
    _edit_card(tmp_path / "lesson", lambda card: card.update(input_size=[8192, 8192]))
    with pytest.raises(ModelError, match=r"safetensors: weights do not fit .*4.weight is \[100, 5408\] in the file"):
        load_model(tmp_path / "lesson")
    # fast's weights fit any input size, and loading must not run it on a 8192×8192 image (1 GB a feature map).
    save_model(_trained_like("fast"), tmp_path / "fast")
    _edit_card(tmp_path / "fast", lambda card: card.update(input_size=[8192, 8192]))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB
    assert load_model(tmp_path / "fast").input_size == (8192, 8192)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000


def test_a_long_list_of_ensemble_members_is_refused_at_the_first_without_weights(tmp_path, monkeypatch):
    import convnet.checkpoint as checkpoint
    from convnet.checkpoint import build_ensemble

    for seed in (1, 2):
        save_model(_trained_like(seed=seed), tmp_path / f"m{seed}")
    save_model(build_ensemble([tmp_path / "m1", tmp_path / "m2"]), tmp_path / "vote")
    _edit_card(tmp_path / "vote", lambda card: card.update(members=card["members"] * 500))
    built = []
    monkeypatch.setattr(checkpoint, "create_model", lambda *a: built.append(a) or create_model(*a))
    with pytest.raises(ModelError, match=r"safetensors: weights do not fit .*members\.2\.0\.weight is missing"):
        load_model(tmp_path / "vote")
    assert len(built) == 5  # the two members that fit twice (their shapes on `meta`, then in memory), the third once


@pytest.mark.parametrize("tensor, value, words", [
    ("0.weight", float("nan"), "0.weight holds NaN or infinite values"),
    ("5.bias", float("inf"), "5.bias holds NaN or infinite values"),
    ("1.running_var", -1.0, "1.running_var holds negative variances"),
])
def test_weights_that_can_only_give_nan_are_refused(tmp_path, tensor, value, words):
    model = _trained_like()
    with torch.no_grad():
        model.state_dict()[tensor][0] = value
    save_model(model, tmp_path / "run")
    with pytest.raises(ModelError, match=f"run/model.safetensors: {words}"):
        load_model(tmp_path / "run")


@pytest.mark.parametrize("model, change, words", [
    ("m1", lambda card: card.update(architecture="lessen"), "unknown model 'lessen'"),
    ("m1", lambda card: card.update(input_size=[2, 2]), "fast cannot take 2×2 images"),
    ("vote", lambda card: card["members"][0].update(architecture="ensemble"), "members cannot be ensembles"),
    ("vote", lambda card: card["members"][1].update(architecture="fastt"), "unknown model 'fastt'"),
    ("vote", lambda card: card.update(members=card["members"][:1]), "at least two models"),
    ("vote", lambda card: card.update(members={"a": 1}), "members must be a list"),
    ("vote", lambda card: card.update(temperature=2.0), "an ensemble's own temperature is 1"),  # it was ignored
])
def test_every_card_problem_names_the_card(tmp_path, model, change, words):
    from convnet.checkpoint import build_ensemble

    for seed in (1, 2):
        save_model(_trained_like(seed=seed), tmp_path / f"m{seed}")
    save_model(build_ensemble([tmp_path / "m1", tmp_path / "m2"]), tmp_path / "vote")
    _edit_card(tmp_path / model, change)
    with pytest.raises(ModelError) as e:
        load_model(tmp_path / model)
    assert str(e.value).startswith(f"{tmp_path / model / 'model.json'}: ") and words in str(e.value)


def test_an_ensemble_with_a_temperature_of_its_own_is_not_saved(tmp_path):
    """Its answers average its members' calibrated probabilities and ignore it: a card that recorded it would say
    what the model does not do (and loading refuses such a card)."""
    vote = Ensemble([_trained_like(seed=1), _trained_like(seed=2)])
    vote.temperature = 2.0
    with pytest.raises(ConfigError, match="an ensemble's own is 1"):
        save_model(vote, tmp_path / "vote")
    assert not (tmp_path / "vote").exists()


def test_an_ensemble_changed_by_hand_is_checked_again_before_it_is_saved(tmp_path):
    """Its members are public: one added or changed after the ensemble was made must still take the ensemble's
    input, which the ensemble normalises for all of them."""
    vote = Ensemble([_trained_like(seed=1), _trained_like(seed=2)])
    other = _trained_like(seed=3)
    other.mean = 0.25
    vote.members.append(other)
    with pytest.raises(ConfigError, match=r"model.members: .*member 3 \(fast\) has normalisation"):
        save_model(vote, tmp_path / "vote")
    other.mean, vote.members[0].classes = vote.mean, list("0123456789")
    with pytest.raises(ConfigError, match=r"member 1 \(fast\) has classes \['0'"):
        save_model(vote, tmp_path / "vote")
    assert not (tmp_path / "vote").exists()


@pytest.mark.parametrize(("change", "words"), [
    (lambda card: card.update(num_classes=3), "num_classes is 3, but its members' is 10"),
    (lambda card: card.update(in_channels=True), "in_channels is True, but its members' is 1"),
    (lambda card: card.update(input_size=[9, 9]), r"input_size is \[9, 9\], but its members' is \[28, 28\]"),
    (lambda card: card.update(temperature=True), "temperature must be a number, not True"),
    (lambda card: card.update(temperature="1"), "temperature must be a number, not '1'"),
])
def test_an_ensemble_card_must_describe_its_members(tmp_path, change, words):
    save_model(Ensemble([_trained_like(seed=1), _trained_like(seed=2)]), tmp_path / "vote")
    _edit_card(tmp_path / "vote", change)
    with pytest.raises(ModelError, match=words):
        load_model(tmp_path / "vote")


def test_a_network_card_with_members_is_refused(tmp_path):
    save_model(Ensemble([_trained_like(seed=1), _trained_like(seed=2)]), tmp_path / "vote")
    members = json.loads((tmp_path / "vote" / "model.json").read_text())["members"]
    save_model(_trained_like(), tmp_path / "one")
    _edit_card(tmp_path / "one", lambda card: card.update(members=members))
    with pytest.raises(ModelError, match="members belong to an ensemble's card, not to a 'fast' network's"):
        load_model(tmp_path / "one")


def test_unreadable_weights_say_permission_denied(tmp_path, monkeypatch):
    import builtins

    import convnet.checkpoint as checkpoint

    save_model(_trained_like(), tmp_path / "run")
    weights = tmp_path / "run" / "model.safetensors"
    weights.chmod(0)
    if os.geteuid() == 0:  # root reads anything: fail the way a user's read fails (safetensors says "No such file")
        real_open = builtins.open

        def denied(*_args, **_kwargs):
            raise FileNotFoundError(f"No such file or directory: {weights}")

        def fake_open(path, *args, **kwargs):
            if str(path) == str(weights):
                raise PermissionError(13, "Permission denied", str(weights))
            return real_open(path, *args, **kwargs)

        monkeypatch.setattr(builtins, "open", fake_open)
        monkeypatch.setattr(checkpoint, "safe_open", denied, raising=False)
    with pytest.raises(PermissionError) as e:  # the CLI prints "convnet: error: FILE: Permission denied"
        load_model(tmp_path / "run")
    assert e.value.filename == str(weights)


def test_an_output_folder_that_cannot_be_written_is_refused_up_front(tmp_path, monkeypatch):
    from convnet.checkpoint import claim_folder

    folder = tmp_path / "read-only"
    folder.mkdir(mode=0o555)
    if os.geteuid() == 0:  # root writes anywhere: answer as the permission check would for a user
        real_access = os.access
        monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != folder and real_access(path, mode))
    with pytest.raises(ConfigError, match="read-only: cannot write into this folder"):
        claim_folder(folder)
    assert claim_folder(tmp_path / "writable" / "run") == tmp_path / "writable" / "run"


def test_a_folder_where_a_run_file_goes_is_refused_before_any_work(tmp_path):
    from convnet.checkpoint import claim_folder
    from convnet.checkpoint import RUN_FILES

    run = tmp_path / "run"
    (run / "history.csv").mkdir(parents=True)
    (run / "model.json").write_text("{}")
    with pytest.raises(ConfigError, match="history.csv: is not a file"):
        claim_folder(run, overwrite=True, files=RUN_FILES)
    assert (run / "model.json").read_text() == "{}"  # nothing of the old run is touched


def test_a_failed_save_names_the_file_not_its_temporary(tmp_path, monkeypatch):
    import tempfile

    # save_model refuses a folder it cannot write into up front; this is a write that fails later (a full disk, a
    # permission taken away meanwhile), as creating the temporary file fails.
    folder = tmp_path / "run"

    def denied(prefix, suffix, dir):
        raise PermissionError(13, "Permission denied", f"{dir}/{prefix}x1y2z3{suffix}")

    monkeypatch.setattr(tempfile, "mkstemp", denied)
    with pytest.raises(PermissionError) as e:
        save_model(_trained_like(), folder)
    assert e.value.filename == str(folder / "model.safetensors")


def test_a_saved_model_is_not_replaced_unasked(tmp_path):
    run = tmp_path / "run"
    save_model(_trained_like("fast"), run, metrics={"test_accuracy": 0.99})
    weights = (run / "model.safetensors").read_bytes()
    with pytest.raises(ConfigError, match=re.escape(f"{run} already holds model.safetensors, model.json; choose "
                                                    "another folder name, or pass overwrite=True")):
        save_model(_trained_like("lesson"), run)
    assert (run / "model.safetensors").read_bytes() == weights and load_model(run).arch == "fast"
    (run / "model.safetensors").unlink()  # the card alone is a model's too
    with pytest.raises(ConfigError, match="already holds model.json;"):
        save_model(_trained_like("lesson"), run)
    save_model(_trained_like("lesson"), run, overwrite=True)
    assert load_model(run).arch == "lesson"
    with pytest.raises(ConfigError, match="overwrite must be True or False, not 'no'"):
        save_model(_trained_like(), tmp_path / "other", overwrite="no")


def test_a_run_folder_s_records_go_with_the_model_they_describe(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.json").write_text('{"test_accuracy": 0.99}')  # a run's records, its model gone or not yet there
    with pytest.raises(ConfigError, match="already holds metrics.json; .* pass overwrite=True"):
        save_model(_trained_like(), run)
    assert (run / "metrics.json").exists() and not (run / "model.safetensors").exists()
    (run / "config.json").write_text("{}")
    (run / "notes.txt").write_text("mine")
    save_model(_trained_like("lesson"), run, overwrite=True)
    assert sorted(p.name for p in run.iterdir()) == ["model.json", "model.safetensors", "notes.txt"]
    assert load_model(run).arch == "lesson"


@pytest.mark.parametrize("name", ["x.safetensors", "x.json"])
def test_a_model_file_name_is_not_taken_for_a_folder(tmp_path, name):
    with pytest.raises(ConfigError, match=f"a model is saved as a folder .*without {re.escape(Path(name).suffix)}, "
                                          f"e.g. {re.escape(str(tmp_path / 'x'))}"):
        save_model(_trained_like(), tmp_path / name)
    assert not (tmp_path / name).exists()


def test_saving_onto_a_file_is_a_clear_error(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("keep me")
    for folder in (notes, notes / "run"):
        with pytest.raises(ConfigError, match="notes.txt"):
            save_model(_trained_like(), folder)
    assert notes.read_text() == "keep me"


def test_a_folder_named_through_dot_dot_makes_only_that_folder(tmp_path):
    """`new/../model` names tmp/model: no empty folder `new` is left behind."""
    weights = save_model(_trained_like(), tmp_path / "new" / ".." / "model")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    assert weights.resolve() == (tmp_path / "model" / "model.safetensors") and load_model(tmp_path / "model")
    with pytest.raises(ConfigError, match="already holds model.safetensors, model.json"):  # checked where it is
        save_model(_trained_like("lesson"), tmp_path / "other" / ".." / "model")
    assert load_model(tmp_path / "model").arch == "fast" and not (tmp_path / "other").exists()


def test_a_loop_of_links_is_a_clear_error(tmp_path):
    (tmp_path / "loop").symlink_to("loop")
    with pytest.raises(ConfigError, match="cannot use this folder"):
        save_model(_trained_like(), tmp_path / "loop" / "model")


def test_ctrl_c_while_the_weights_are_read_lets_the_read_finish(tmp_path, monkeypatch):
    # Interrupted inside safetensors, the read came out as a ValueError (a traceback): it is finished, then stops.
    import signal

    from convnet import checkpoint

    save_model(_trained_like(), tmp_path / "run")
    real, finished = checkpoint.load, []

    def interrupted_read(data):
        os.kill(os.getpid(), signal.SIGINT)
        weights = real(data)
        finished.append(True)
        return weights

    monkeypatch.setattr(checkpoint, "load", interrupted_read)
    with pytest.raises(KeyboardInterrupt):
        load_model(tmp_path / "run")
    assert finished


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_a_card_json_cannot_hold_is_refused_before_any_file_changes(tmp_path):
    run = tmp_path / "run"
    save_model(_trained_like("fast"), run, metrics={"test_accuracy": 0.85})
    before = _files(run)
    with pytest.raises(ConfigError, match=r"card's 'metrics.test_accuracy' cannot be written as JSON .*Tensor.*"
                                          r"e.g. float\(x\)"):
        save_model(_trained_like("lesson"), run, overwrite=True, metrics={"test_accuracy": torch.tensor(0.9)})
    assert _files(run) == before
    with pytest.raises(ConfigError, match="'sources.1' cannot be written"):
        save_model(_trained_like(), tmp_path / "new", sources=["a", {"b"}])
    assert not (tmp_path / "new").exists()
    with pytest.raises(ConfigError, match="'metrics.x' cannot be written as JSON .*Out of range float"):
        save_model(_trained_like(), run, overwrite=True, metrics={"x": float("nan")})  # was written as NaN
    looped: list = [1]
    looped.append(looped)
    with pytest.raises(ConfigError, match=r"'metrics.a.1' cannot be written as JSON \(Circular reference"):
        save_model(_trained_like(), run, overwrite=True, metrics={"a": looped})
    assert _files(run) == before


@pytest.mark.parametrize("name", ["a\0b", "caf\udce9"])  # a NUL; a Latin-1 é as Python gets it from the disk
def test_a_folder_no_one_could_read_back_is_refused_before_the_work(tmp_path, name):
    """A NUL raised Python's ValueError; a name that is not UTF-8 was written, then never opened by safetensors."""
    with pytest.raises(ConfigError, match="must be valid UTF-8 text without NUL characters"):
        save_model(_trained_like(), tmp_path / name)
    assert list(tmp_path.iterdir()) == []


def test_weights_under_a_path_that_is_not_utf8_are_not_called_corrupt(tmp_path):
    run = tmp_path / "run"
    save_model(_trained_like(), run)
    odd = Path(os.fsdecode(os.fsencode(str(tmp_path)) + b"/caf\xe9"))
    run.rename(odd)
    with pytest.raises(ModelError, match="safetensors opens only paths that are valid UTF-8, which this one is not"):
        load_model(odd)


def test_a_failed_card_write_keeps_the_old_weights(tmp_path, monkeypatch):
    import errno

    import convnet.checkpoint as checkpoint

    run = tmp_path / "run"
    save_model(_trained_like("fast"), run)
    before = _files(run)
    real = checkpoint.atomic_write

    def full(f):
        raise OSError(errno.ENOSPC, "No space left on device")  # as a full disk says it: no file named

    def disk_full_at_the_card(path, write):
        real(path, full if Path(path).name == "model.json" else write)

    monkeypatch.setattr(checkpoint, "atomic_write", disk_full_at_the_card)
    with pytest.raises(OSError, match="No space left") as e:
        save_model(_trained_like("lesson"), run, overwrite=True)
    assert e.value.filename == str(run / "model.json")
    assert _files(run) == before and load_model(run).arch == "fast"


@pytest.mark.parametrize("extra, words", [
    ({"format": "v2"}, "format: the model card's own field,"),
    ({"classes": list("abcdefghij"), "temperature": 0.01}, "classes, temperature: the model card's own fields"),
    ({"members": []}, "members:"),
])
def test_extra_card_fields_cannot_replace_the_cards_own(tmp_path, extra, words):
    with pytest.raises(ConfigError, match=f"{words}.* set it on the model"):
        save_model(_trained_like(), tmp_path / "run", **extra)
    assert not (tmp_path / "run").exists()


def test_the_reserved_card_fields_are_the_cards_own(tmp_path):
    from convnet.checkpoint import CARD_FIELDS

    save_model(_trained_like(), tmp_path / "run")
    assert set(json.loads((tmp_path / "run" / "model.json").read_text())) | {"members", "typicality"} == \
        set(CARD_FIELDS)  # a network's card, before any typicality is fitted


def test_weights_from_another_save_are_refused(tmp_path):
    # Same architecture, so names and shapes fit: only the card's SHA-256 of its weights tells the pair apart.
    save_model(_trained_like(), tmp_path / "a")
    other = _trained_like()
    with torch.no_grad():
        next(other.parameters()).add_(1)
    save_model(other, tmp_path / "b")
    shutil.copy(tmp_path / "b" / "model.safetensors", tmp_path / "a" / "model.safetensors")
    with pytest.raises(ModelError, match="not the weights .*model.json was written with"):
        load_model(tmp_path / "a")
    card = json.loads((tmp_path / "b" / "model.json").read_text())
    for bad in (None, card["weights_sha256"].upper()):
        (tmp_path / "a" / "model.json").write_text(json.dumps({**card, "weights_sha256": bad}))
        with pytest.raises(ModelError, match="weights_sha256 .* is not a SHA-256 in hexadecimal"):
            load_model(tmp_path / "a")
    del card["weights_sha256"]  # a card from before the hash: loads as it did
    (tmp_path / "a" / "model.json").write_text(json.dumps(card))
    assert load_model(tmp_path / "a").card == card


def test_numpy_numbers_are_saved_as_numbers(tmp_path):
    import numpy as np

    from convnet.models import Ensemble

    model = _trained_like()
    model.mean, model.std, model.temperature = np.float32(0.1307), np.float64(0.3081), np.float32(1.5)
    save_model(model, tmp_path / "run")
    assert load_model(tmp_path / "run").mean == pytest.approx(0.1307)
    other = _trained_like()
    other.mean, other.std = model.mean, model.std
    save_model(Ensemble([model, other]), tmp_path / "vote")  # its members' cards hold their temperatures
    assert load_model(tmp_path / "vote").members[0].temperature == 1.5


@pytest.mark.parametrize("name, value", [("mean", True), ("std", 0.0), ("temperature", float("nan"))])
def test_scaling_load_model_would_refuse_is_not_saved(tmp_path, name, value):
    model = _trained_like()
    setattr(model, name, value)
    with pytest.raises(ConfigError, match="model.mean, model.std or model.temperature"):
        save_model(model, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_member_s_scaling_load_model_would_refuse_is_not_saved(tmp_path):
    model, other = _trained_like(), _trained_like()
    other.temperature = float("nan")
    with pytest.raises(ConfigError, match=r"model.members\[1\]: .*temperature nan must be finite"):
        save_model(Ensemble([model, other]), tmp_path / "vote")
    assert not (tmp_path / "vote").exists()


def test_two_trainings_alike_are_the_same_ensemble_member(tmp_path, monkeypatch):
    import time

    from convnet.checkpoint import build_ensemble

    save_model(_trained_like(), tmp_path / "a", metrics={"test_accuracy": 0.5}, seed=1)
    monkeypatch.setattr(time, "strftime", lambda *_: "2001-02-03T04:05:06+0000")  # made at another time
    save_model(_trained_like(), tmp_path / "b", metrics={"test_accuracy": 0.5}, seed=1, sources=["elsewhere"])
    with pytest.raises(ModelError, match="are the same model"):
        build_ensemble([tmp_path / "a", tmp_path / "b"])


def _save_as(model, run: Path, dtype: torch.dtype) -> None:
    from safetensors.torch import save_file

    save_model(model, run)
    state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in model.state_dict().items()}
    try:
        save_file(state, str(run / "model.safetensors"))
    except KeyError:  # float8 came in safetensors 0.4.2, complex64 in 0.7: no such file to refuse before
        pytest.skip(f"this safetensors cannot write {dtype}")
    card = json.loads((run / "model.json").read_text())
    del card["weights_sha256"]  # a pair put together elsewhere, with no hash to check
    (run / "model.json").write_text(json.dumps(card))


@pytest.mark.parametrize("dtype, words", [
    (torch.int32, "I32"), (torch.bool, "BOOL"), (torch.float8_e4m3fn, "F8_E4M3"), (torch.complex64, "C64"),
])
def test_weights_of_another_data_type_are_refused(tmp_path, dtype, words):
    _save_as(_trained_like(), tmp_path / "run", dtype)
    with pytest.raises(ModelError, match=f"run/model.safetensors: 0.weight holds {words} values where a model's "
                                         "weights are F32 or F16 or BF16 or F64; the weights are corrupt"):
        load_model(tmp_path / "run")


def test_an_integer_buffer_of_complex_numbers_is_refused(recwarn, tmp_path):
    from safetensors.torch import save_file

    run = tmp_path / "run"
    model = _trained_like()
    save_model(model, run)
    state = {k: v if v.is_floating_point() else v.to(torch.complex64) for k, v in model.state_dict().items()}
    try:
        save_file(state, str(run / "model.safetensors"))
    except KeyError:  # complex64 came in safetensors 0.7
        pytest.skip("this safetensors cannot write complex64")
    card = json.loads((run / "model.json").read_text())
    (run / "model.json").write_text(json.dumps({k: v for k, v in card.items() if k != "weights_sha256"}))
    # It loaded, with PyTorch's "Casting complex values to real discards the imaginary part" on stderr.
    with pytest.raises(ModelError, match=r"1.num_batches_tracked holds complex numbers \(C64\), which no convnet"):
        load_model(run)
    assert not [w for w in recwarn if "complex" in str(w.message)]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_weights_in_half_or_double_precision_load(tmp_path, dtype):
    model = _trained_like()
    _save_as(model, tmp_path / "run", dtype)
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():  # the same model, give or take rounding
        assert torch.allclose(load_model(tmp_path / "run")(x), model(x), atol=0.1)


@pytest.mark.parametrize("classes, words", [
    (["a"] * 10, "class name 'a' is given more than once"),
    ([*"abcdefghi", "j\nk"], r"class name 'j\nk' is blank or holds a line break"),
    (list(range(10)), "class names must be strings, not int"),
    (list("abc"), "classes must be a list of num_classes (10) names"),
])
def test_class_names_load_model_would_refuse_are_not_saved(tmp_path, classes, words):
    model = _trained_like()
    model.classes = classes
    with pytest.raises(ConfigError, match=f"model.classes: {re.escape(words)}.*; set it to 10 different names"):
        save_model(model, tmp_path / "run")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("refs", [5, "runs/a", PurePosixPath("runs/a"), b"runs/a"])
def test_build_ensemble_takes_a_list(refs):
    from convnet.checkpoint import build_ensemble

    with pytest.raises(ModelError, match="build_ensemble takes a list of models"):
        build_ensemble(refs)
