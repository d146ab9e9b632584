"""The `convnet` command: each subcommand is a thin call into the Python API of the same name."""
from __future__ import annotations

from convnet.interrupt import imports_held, sigterm_as_ctrl_c

with imports_held("convnet"):  # as the package's own: the `convnet` command imports this module after it
    import argparse
    import dataclasses
    import difflib
    import itertools
    import json
    import os
    import re
    import shlex
    import signal
    import sys
    import time
    import typing
    from collections.abc import Callable, Iterable, Sequence
    from pathlib import Path

    from convnet.errors import ConfigError, ConvnetError

if typing.TYPE_CHECKING:  # the answers' types; the module itself is imported by the commands that answer
    from convnet.infer import Prediction, Reading

EXAMPLES = """examples:
  convnet data fetch mnist                     get MNIST into the cache (verified by SHA-256)
  convnet models                               list the architectures
  convnet models lesson --summary              the lesson's network as a Keras-style table
  convnet train --model fast --epochs 1        ≥ 99 % test accuracy in seconds on a CPU
  convnet train --model lesson                 the lesson's recipe: Adam 1e-3, batch 32, 10 epochs
  convnet evaluate runs/fast-20261126-101500   accuracy, per-class metrics, confusion matrix
  convnet ensemble runs/a runs/b runs/c --out runs/vote   average three models' probabilities
  convnet predict digit.png photos/ --json     recognise digits in files, folders or globs
  convnet read number.jpg                      read a whole handwritten number
  convnet read scans/ --json                   ... in every image of a folder, one line each
"""


class Parser(argparse.ArgumentParser):
    """argparse that suggests the closest option or command for a typo."""

    known_words: set[str] = set()  # every command's options, to tell a typo from another command's option
    argv: list[str] = []  # the line being parsed, to tell an option's value from a mistyped command

    def __init__(self, *args, **kwargs) -> None:
        # No abbreviations: `--epoch` would be taken for --epochs without a word, and would change meaning (or stop
        # working) once another option began the same way; a typo gets its suggestion instead.
        super().__init__(*args, **{"allow_abbrev": False, **kwargs})
        # argparse takes "-1e-3" for an option ("expected one argument"), as its pattern of negative numbers has no
        # exponent: with one, `--lr -1e-3` reaches the check that says what is wrong with it.
        self._negative_number_matcher = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")
        # The innermost command's parser, left in the namespace, reports the options no parser took: its usage
        # line and options are the ones that help (argparse leaves them to the top level's).
        self.set_defaults(_parser=self)

    def parse_args(self, args=None, namespace=None):  # type: ignore[override]
        Parser.argv = list(sys.argv[1:] if args is None else args)
        parsed, extras = self.parse_known_args(args, namespace)
        innermost = vars(parsed).pop("_parser", self)
        if extras:
            innermost.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed

    def error(self, message: str) -> None:  # type: ignore[override]
        if not _speaks():  # under torchrun every process parses the same line; one says so
            self.exit(2)
        own = [o for o in self._option_string_actions if o.startswith("--") and o != "--help"]
        trains = self.prog.split()[-1] == "train"  # its --model names an architecture, not a trained model
        hint = _suggestion(message, own, trains)
        if not hint and "arguments are required" in message:  # `convnet --vers`: the unknown option is the mistake
            unknown = [a for a in Parser.argv if a.startswith("--") and a.split("=")[0] not in Parser.known_words]
            hint = _suggestion(f"unrecognized arguments: {unknown[0]}", own, trains) if unknown else ""
        if "unrecognized arguments: --model" in message and any(a.dest in ("model", "models") for a in self._actions):
            hint = f" (give the model as the first argument: {self.prog} MODEL)"  # as evaluate and ensemble take it
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}{hint}\n")

    def _print_message(self, message: str, file=None) -> None:
        if not _speaks():  # --help and --version: once, not once per torchrun process
            return
        if message and file is sys.stdout:  # argparse drops a failed write: --help to a full disk would exit 0
            file.write(message)
            file.flush()
        else:
            super()._print_message(message, file)

    def add_argument(self, *args, **kwargs):
        Parser.known_words.update(a for a in args if a.startswith("-"))
        return super().add_argument(*args, **kwargs)


def _speaks() -> bool:
    """Whether this process prints what the parser says: for any command but `train`, which alone runs under
    torchrun (a RANK left in a shell must not silence `predict --help`); for `train` and the top level's own options
    (`torchrun … -m convnet --version`), only rank 0."""
    command = next((word for word in Parser.argv if not word.startswith("-")), None)
    return command not in (None, "train") or _main_process()


def _main_process() -> bool:
    """Whether this process speaks for the command: the only one, or torchrun's rank 0."""
    from convnet import distributed

    try:
        return distributed.world().is_main
    except ConvnetError:  # torchrun's variables are broken: the command line's mistake still comes first
        return True


def _model_names() -> list[str]:
    from convnet.models import list_models  # here: torch only once a command line went wrong this way

    return list_models()


def _suggestion(message: str, own_options: list[str], trains: bool = False) -> str:
    """' (did you mean …?)' for the first mistyped command or option named in an argparse error, else ''. `trains`:
    the command is `train`, where an architecture's name given as an option (`--lesson`) is meant for --model."""
    if "invalid choice:" in message:
        bad = message.split("invalid choice:")[1].split("'")[1]
        at = Parser.argv.index(bad) if bad in Parser.argv else 0
        before = Parser.argv[at - 1] if at else ""
        # `convnet --model fast train`: the option's value was taken for a command (not a bad value of an option)
        if before in Parser.known_words and not message.startswith("argument -"):
            return f" ({before} {bad} goes after the command's name)"
        choices = message.split("choose from")[1].replace("'", "").replace(")", "").replace(",", " ").split()
    elif "unrecognized arguments:" in message:
        bad = message.split("unrecognized arguments:")[1].split()[0].split("=")[0]
        choices = own_options
        if bad in own_options:  # typed before the command's name, where the command cannot see it yet
            return f" ({bad!r} goes after the command's name)"
        if bad in Parser.known_words:  # a real option, of another command: suggesting a near one would confuse
            return f" ({bad!r} belongs to other commands; the command's -h lists its own options)"
        if trains and bad[2:] in _model_names():
            return f" (did you mean '--model {bad[2:]}'?)"
    else:
        return ""
    # The start of one option's name (`--min`) is that option; argparse's abbreviations are off (Parser)
    close = [c for c in choices if c.startswith(bad)] if bad.startswith("--") else []
    close = close if len(close) == 1 else difflib.get_close_matches(bad, choices, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def fraction(text: str) -> float:
    """argparse type: a share between 0 and 1, given as 0.99, as 99 or as 99% (per cent); 1 is the whole, not 1 %."""
    number = text.strip()
    percent = number.endswith("%")
    value = float(number.removesuffix("%"))  # not a number: argparse's own "invalid fraction value"
    share = value / 100 if percent or value > 1 else value
    if not 0 <= share <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (or 0 and 100 %), got {text}")
    return share


def held_out_share(text: str) -> float:
    """argparse type: `fraction` below the whole: 1 would hold out every training image, and reads like 1 %."""
    share = fraction(text)
    if share == 1:
        raise argparse.ArgumentTypeError(f"must be below 1 (100 %), got {text}, which would hold out every training "
                                         "image; 1 % is 0.01")
    return share


def user_path(text: str) -> str:
    """argparse type: a path with `~` expanded, which the shell leaves as it is in `--out=~/runs/x`: a folder
    literally named `~` would be made instead."""
    return os.path.expanduser(text)


def folder_path(text: str) -> str:
    """argparse type: `user_path` of a folder to read, which an empty path does not name (not the current one)."""
    if not text:
        raise argparse.ArgumentTypeError("an empty path names no folder")
    return user_path(text)


def image_path(text: str) -> str:
    """An image argument: `-` is standard input (a pipe, a redirected file, a socket), unless a file is named so."""
    if not text:
        raise argparse.ArgumentTypeError("an empty path names no image")
    if text == "-" and not os.path.exists(text):
        from convnet.preprocess.load import StandardInput  # here: numpy and PIL only for the commands that read

        return StandardInput(text)
    return text


def positive_int(text: str) -> int:
    """argparse type: a whole number of at least 1 (counts, repeats)."""
    value = int(text)  # not a number: argparse's own "invalid positive_int value"
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


class _Output:
    """Standard output for a command: a write that fails (`> /dev/full`) says it was standard output, not a file of
    the command's (a run saved whole, then "No space left on device", reads as a run that failed)."""

    def __init__(self, stream) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        return self._said(self._stream.write, text)

    def flush(self) -> None:
        self._said(self._stream.flush)

    def _said(self, action, *args):
        try:
            return action(*args)
        except BrokenPipeError:  # the reader left: report_errors stops quietly
            raise
        except OSError as e:
            raise ConvnetError(f"cannot write to standard output ({e.strerror or e})") from None

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def report_errors(run: Callable[[], int | None], prog: str) -> int:
    """Run a command's body, turning bad input and refusals of the file system into `prog: error: …` (exit 1) and
    Ctrl-C into exit 130.

    The `convnet` command and the scripts in benchmarks/ share it: bad input never ends in a traceback.
    """
    escape_unencodable()
    try:
        return run() or 0
    except ConvnetError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # the reader left (`| head`): stop quietly, as a command killed by SIGPIPE does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the exit's flush has nowhere to fail
        return 141
    except OSError as e:  # the file system said no: a full disk, a missing permission, a place that is not a folder
        where = f"{e.filename}: " if e.filename else ""
        print(f"{prog}: error: {where}{e.strerror or e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except (MemoryError, RuntimeError) as e:  # PyTorch says "out of memory" with a RuntimeError, on every device
        if isinstance(e, MemoryError):  # numpy's: "Unable to allocate 745. GiB for an array with shape …"
            reason = str(e).strip().splitlines()[0] if str(e).strip() else "no details"
        else:  # PyTorch's, one sentence of a longer story, or not about memory at all
            said = [s.strip() for s in str(e).replace("\n", " ").split(". ")
                    if any(w in s.lower() for w in OUT_OF_MEMORY)]  # CUDA's "out of memory", others' "Out of memory"
            if not said:
                raise  # a bug: its traceback is what helps
            reason = said[0]
        print(f"{prog}: error: out of memory ({reason}): free some memory, or ask for less (a smaller batch, model "
              "or images).", file=sys.stderr)
        return 1


def escape_unencodable() -> None:
    """Print characters that standard output and error cannot encode escaped (`\\u2265`), not as an error.

    A file name in another system's encoding, or the ≥ and → of a report, in a stream of a narrower encoding (a
    Windows program's output redirected to a file is cp1252 there) raised UnicodeEncodeError: for speed.py, after
    the whole benchmark had run.
    """
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")


# How PyTorch's allocators word a failed allocation: the CPU's, and CUDA's and MPS's.
OUT_OF_MEMORY = ("can't allocate memory", "out of memory")


# A shipped model's name is the shipped model even where the current folder holds a folder of that name.
MODEL_HELP = "run folder, model file (.safetensors/.json) or shipped model name (./NAME for a folder named like one)"


def _add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | mps (default: auto)")


def _add_data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", default="mnist", help="data set name (default: mnist)")
    p.add_argument("--data-dir", type=folder_path,
                   help="folder with the four standard IDX files (.gz or not) instead of the cache")


def build_parser() -> Parser:
    from convnet.config import OPTIMIZERS, PRECISIONS, SCHEDULES

    parser = Parser(
        prog="convnet",
        description="Train, evaluate and use convolutional neural networks for image recognition.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"convnet {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True

    data = sub.add_parser("data", help="fetch data sets and show what is cached")
    data_sub = data.add_subparsers(dest="action", metavar="ACTION", parser_class=Parser)
    data_sub.required = True
    fetch = data_sub.add_parser("fetch", help="download and verify a data set into the cache")
    fetch.add_argument("name", nargs="?", default="mnist", help="data set (default: mnist)")
    fetch.add_argument("--force", action="store_true", help="fetch again even when a sound copy is cached")
    info = data_sub.add_parser("info", help="where a data set is, its sizes, class counts and checksums")
    info.add_argument("name", nargs="?", default="mnist", help="data set (default: mnist)")
    info.add_argument("--data-dir", type=folder_path, help="describe IDX files in this folder instead of the cache")
    info.add_argument("--json", action="store_true", help="print as JSON")

    models = sub.add_parser("models", help="list the architectures, or show one")
    models.add_argument("name", nargs="?", help="show only this model")
    models.add_argument("--summary", action="store_true", help="Keras-style layer table")
    models.add_argument("--json", action="store_true", help="print as JSON")

    train = sub.add_parser("train", help="train a model and write a run folder", epilog=EXAMPLES,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    train.add_argument("--model", default="fast", help="architecture (see `convnet models`; default: fast)")
    _add_data_options(train)
    train.add_argument("--epochs", type=int, help="default: the model's recipe")
    train.add_argument("--batch-size", type=int, help="default: the model's recipe")
    train.add_argument("--lr", type=float, help="peak learning rate (default: the model's recipe)")
    train.add_argument("--optimizer", choices=OPTIMIZERS, help="default: the model's recipe")
    train.add_argument("--weight-decay", type=float, help="default: the model's recipe")
    train.add_argument("--label-smoothing", type=float, help="default: the model's recipe")
    train.add_argument("--schedule", choices=SCHEDULES, help="default: the model's recipe")
    train.add_argument("--ema", type=float, metavar="DECAY",
                       help="keep a moving average of the weights with this decay, e.g. 0.999, and make it the "
                       "trained model (0: none; default: the model's recipe)")
    train.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None,
                       help="the recipe's augmentation (rotation/shift/scale, and robust's low-resolution blur) "
                            "on or off; for a recipe without any (fast, lesson), --augment adds accurate's: "
                            "rotation ±10°, shift and scale ±10 %%")
    train.add_argument("--seed", type=int, default=0,
                       help="seeds the initial weights, the hold-out and the batch order (default: 0)")
    train.add_argument("--val-split", type=held_out_share,
                       help="share of the training images held out for validation and calibration, e.g. 0.1 or 10 "
                            "(default: the model's recipe)")
    train.add_argument("--target-accuracy", type=fraction,
                       help="stop once test accuracy reaches this, e.g. 0.99, 99 or 99%%")
    train.add_argument("--out", type=user_path, help="run folder (default: runs/<model>-<timestamp>)")
    train.add_argument("--overwrite", action="store_true", default=None,
                       help="replace the run already in --out (otherwise that is an error)")
    _add_model_options(train)
    train.add_argument("--precision", choices=PRECISIONS,
                       help="auto (default): bf16 autocast where it is faster than fp32 (CUDA GPUs from Ampere "
                       "on, CPUs with AMX, AMD CPUs with AVX-512 BF16), fp32 elsewhere")
    train.add_argument("--compile", action="store_true", default=None,
                       help="torch.compile the model (with CUDA graphs on a GPU)")
    train.add_argument("--cuda-graphs", action="store_true", default=None,
                       help="record each training step's forward and backward pass once as a CUDA graph and "
                            "replay it (CUDA GPUs; one process)")

    ev = sub.add_parser("evaluate", help="test accuracy, per-class metrics and confusion matrix of a model")
    ev.add_argument("model", help=MODEL_HELP)
    _add_data_options(ev)
    ev.add_argument("--json", action="store_true", help="print the results as JSON")
    _add_model_options(ev)
    ens = sub.add_parser("ensemble", help="combine trained models into one that averages their probabilities")
    ens.add_argument("models", nargs="+", metavar="MODEL", help="run folders, model files or shipped model names "
                     "(./NAME for a folder named like a shipped model)")
    ens.add_argument("--out", type=user_path, required=True,
                     help="folder for the ensemble's model.safetensors + model.json")
    ens.add_argument("--overwrite", action="store_true",
                     help="replace the model already in --out (and the records of a training run there)")
    _add_data_options(ens)
    _add_model_options(ens)

    pred = sub.add_parser("predict", help="recognise one digit per image in files, folders or globs")
    pred.add_argument("paths", nargs="+", metavar="PATH", type=image_path,
                      help="image files, folders (recursive), glob patterns, or - for standard input")
    _add_answer_options(pred, "below this confidence, no label but 'low confidence'", "inputs")
    pred.add_argument("--top-k", type=positive_int, default=3, help="how many answers to list (default: 3)")
    pred.add_argument("--json", action="store_true", help="one JSON object per line")

    read = sub.add_parser("read", help="read a whole handwritten number (several digits) in each image")
    read.add_argument("paths", nargs="+", metavar="PATH", type=image_path,
                      help="image files of numbers, folders (recursive), glob patterns, or - for standard input")
    _add_answer_options(read, "if a digit's confidence is below this, no number but 'low confidence'", "digits")
    read.add_argument("--json", action="store_true", help="one JSON object per line")
    return parser


def _add_answer_options(command: argparse.ArgumentParser, below: str, inputs: str) -> None:
    """The options of the commands that answer with the shipped or a given model: `predict` and `read`."""
    command.add_argument("--model", type=user_path, help=f"{MODEL_HELP} (default: the shipped model)")
    command.add_argument("--min-confidence", type=fraction, default=None,
                         help=f"{below}: 0.5, 50 or 50%% (default 0.5; 0 always answers, {inputs} unlike the training "
                         "images, blobs and empty boxes too; values above 1 are per cent, 1 itself is 100 %%)")
    _add_model_options(command)


def _version() -> str:
    from convnet import __version__

    return __version__


def cmd_data(args: argparse.Namespace) -> int:
    from convnet import data

    if args.action == "fetch":
        path = data.fetch(args.name, force=args.force, log=lambda m: print(m, file=sys.stderr))
        print(f"{args.name}: verified and cached at {path}")
        return 0
    ds = data.load_dataset(args.name, args.data_dir, fetch_missing=False)
    info = data.describe(ds)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"{info['name']}  (source: {info['source']})")
    if not args.data_dir:
        print(f"cache: {data.cache_path(args.name)}")
    for split in ("train", "test"):
        s = info[split]
        counts = "  ".join(f"{c}:{n}" for c, n in s["class_counts"].items())
        print(f"{split:>5}: {s['images']:,} images {'×'.join(map(str, s['shape']))}   {counts}")
    print(f"sha256: {info['sha256']}")
    for part, digest in info["files_sha256"].items():
        print(f"  {part:<8} {digest}")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from convnet.checkpoint import shipped_models
    from convnet.models import count_macs, create_model, get_spec, list_models
    from convnet.models.summary import layer_rows

    if args.name in shipped_models():  # a trained model's name, not an architecture's
        raise ConfigError(f"{args.name!r} is a trained model shipped with convnet, not an architecture; "
                          f"`convnet evaluate {args.name}` scores it, and its card names its architecture.")
    names = list_models() if args.name is None else [get_spec(args.name).name]
    rows = []
    for name in names:
        model = create_model(name)
        rows.append({
            "name": name,
            "parameters": sum(p.numel() for p in model.parameters()),
            "macs": count_macs(model),
            "description": get_spec(name).description,
            "recipe": dataclasses.asdict(get_spec(name).recipe),
        })
        if args.summary and args.json:  # stdout stays one JSON document
            rows[-1]["layers"] = [{"layer": layer, "output_shape": shape, "parameters": params}
                                  for layer, shape, params in layer_rows(model)]
        elif args.summary:
            model.summary()
    if args.json:
        print(json.dumps(rows, indent=2))
    elif not args.summary:
        width = max(len(r["name"]) for r in rows)
        print(f"{'name':<{width}} {'params':>10} {'MACs/image':>12}  description")
        for r in rows:
            print(f"{r['name']:<{width}} {r['parameters']:>10,} {r['macs']:>12,}  {r['description']}")
        if args.name is not None:
            print(f"recipe: {_recipe_line(rows[0]['recipe'])}")
    return 0


def _recipe_line(recipe: dict) -> str:
    """What `convnet train --model NAME` does unless told otherwise, in the words of the train options."""
    augment = ", ".join(f"{k} {v:g}" for k, v in recipe["augment"].items()) or "none"
    epochs = recipe["epochs"]
    line = (f"{epochs} epoch{'s' * (epochs != 1)}, batch {recipe['batch_size']}, {recipe['optimizer']} lr "
            f"{recipe['lr']:g} ({recipe['schedule']}), weight decay {recipe['weight_decay']:g}, label smoothing "
            f"{recipe['label_smoothing']:g}, augmentation: {augment}, {recipe['val_split']:.0%} held out")
    if recipe["fp32_finish"]:
        line += f", last {recipe['fp32_finish']:.0%} of epochs in fp32 under --precision auto"
    if recipe["ema"]:
        line += f", moving average of the weights (decay {recipe['ema']:g})"
    return line


def cmd_train(args: argparse.Namespace) -> int:
    from convnet import distributed

    w = distributed.world()
    if not w.active:
        return _train(args)
    distributed.exit_process(_train_rank(args, w))  # leave before PyTorch's teardown can abort the process


# How long a process other than rank 0 keeps an error to itself: one that rank 0 meets too (a bad option) is rank 0's
# to report, and torchrun stops this process once rank 0 has.
RANK_ERROR_GRACE = 5.0


def _train_rank(args: argparse.Namespace, w) -> int:
    """One torchrun process: rank 0 reports the errors every rank meets; any rank that stops for a reason of its own
    (most often: another process stopped, and this one lost it in the middle of a collective) says so in one line."""
    from convnet import distributed

    try:
        return report_errors(lambda: _train(args), "convnet") if w.is_main else _train(args)
    except distributed.ReportedElsewhere:  # rank 0 has reported it
        return 1
    except ConvnetError as e:  # met before the processes could agree: rank 0's too (an option), or this rank's own
        try:
            time.sleep(RANK_ERROR_GRACE)
        except KeyboardInterrupt:  # torchrun stopped the run: rank 0 met it too, and said it
            return 130
        _deaf_to_stops()
        print(f"convnet: rank {w.rank}: error: {e}", file=sys.stderr)  # a machine without the data, say
        return 1
    except KeyboardInterrupt:  # another rank's, caught outside the training loop
        return 130
    except Exception as e:
        _deaf_to_stops()  # torchrun's SIGTERM for the others, coming as this is said, would add "interrupted"
        which = " (killed or crashed; torchrun's report says which)" if distributed.peer_gone(e) else ""
        print(f"convnet: rank {w.rank} stopped: {distributed.failure_reason(e)}{which}", file=sys.stderr)
        return 1


def _deaf_to_stops() -> None:
    """Ignore Ctrl-C and SIGTERM from here on: the command has ended, and only its last words and exit are left."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)


def _train(args: argparse.Namespace) -> int:
    from convnet.config import TrainConfig
    from convnet.train import train

    options = {k: v for k, v in vars(args).items() if k != "command" and v is not None}
    result = train(TrainConfig.from_dict(options))
    if result.run_dir is None:  # a torchrun rank other than 0: rank 0 reports
        return 130 if result.metrics["interrupted"] else 0
    if result.metrics["interrupted"]:
        epochs = result.metrics["epochs"]
        print(f"interrupted after {epochs} epoch(s); the last one's checkpoint is in {result.run_dir}" if epochs else
              "interrupted during the first epoch: nothing was saved")
        return 130
    print(f"test accuracy: {result.metrics['test_accuracy']:.2%}  (train time {result.metrics['train_seconds']:.1f}s, "
          f"run folder {result.run_dir})")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from convnet.checkpoint import load_model
    from convnet.data import load_dataset
    from convnet.device import resolve_device
    from convnet.evaluate import evaluate, format_report

    device = resolve_device(args.device)  # a device that is not there fails now, before MNIST may be fetched
    model = load_model(args.model)
    data = load_dataset(args.dataset, args.data_dir, test_only=True)
    _note_other_data(args.model, model, data)
    result = evaluate(model, data, device=device)
    print(json.dumps(result.to_dict(), indent=2) if args.json else format_report(result))
    return 0


def _trained_on(model) -> dict | None:
    """The data set a loaded model's card says it was trained on (an ensemble's: its members' common one)."""
    card = getattr(model, "card", None)
    trained_on = card.get("dataset") if isinstance(card, dict) else None
    return trained_on if isinstance(trained_on, dict) else None


def _note_other_data(name: str, model, data) -> None:
    """Say so when a model was trained on other data than it is evaluated on here: a folder of other images under
    the same name (a data set given with --data-dir, then forgotten). The figures are right for these images, and
    misleading if they were meant for the others."""
    trained_on = _trained_on(model)
    # The card's checksum covers all four files: without the training ones there is nothing to compare.
    # A card edited by hand may hold anything there: only a checksum can say the data differ.
    said = trained_on.get("sha256") if trained_on is not None else None
    if isinstance(said, str) and len(data.train_x) and said != data.sha256:
        print(f"convnet: note: {name} was trained on other data ({trained_on.get('source') or 'unknown'}) "
              f"than it is evaluated on here ({data.source or data.name})", file=sys.stderr)


def cmd_ensemble(args: argparse.Namespace) -> int:
    from convnet.checkpoint import RUN_FILES, WEIGHTS, claim_folder, folders_to_make, real_path, remove_empty, resolve

    target = real_path(Path(args.out), follow=True) / WEIGHTS
    if any(resolve(ref)[0].resolve() == target for ref in args.models):  # not even with --overwrite
        raise ConfigError(f"--out {args.out} holds one of the members, which the ensemble would replace; choose "
                          "another folder.")
    made = folders_to_make(Path(args.out))
    claim_folder(args.out, args.overwrite, RUN_FILES)  # before the loading and evaluations, which take a while
    try:
        _make_ensemble(args)
    except BaseException:  # an error or Ctrl-C: no empty --out left behind
        remove_empty(made)
        raise
    return 0


def _make_ensemble(args: argparse.Namespace) -> None:
    """Load, evaluate and save the ensemble into its claimed --out, and report each member's test accuracy."""
    from convnet.checkpoint import build_ensemble, save_model, shipped_models
    from convnet.data import load_dataset
    from convnet.evaluate import evaluate, shared_mistakes

    ensemble = build_ensemble(args.models, device=args.device)
    data = load_dataset(args.dataset, args.data_dir, test_only=True)  # scoring reads no more, as `evaluate`'s
    for ref, member in zip(args.models, ensemble.members):
        _note_other_data(str(ref), member, data)
    scores = [evaluate(m, data) for m in ensemble.members]
    members = [s.accuracy for s in scores]
    result = evaluate(ensemble, data)
    shared = shared_mistakes(result, scores, data.test_y)
    # The card's data set is what the members were trained on, when they agree (what `evaluate` compares against);
    # the one they were scored on here goes with the scores.
    trained_on = [_trained_on(m) for m in ensemble.members]
    common = {"dataset": trained_on[0]} if all(t is not None and t.get("sha256") == trained_on[0].get("sha256")
                                                for t in trained_on) else {}
    shipped = shipped_models()  # listed once, not once a member
    # The folder was claimed above, --overwrite and all; a training run's records there go with its model.
    save_model(ensemble, args.out, overwrite=True, **common,
               metrics={"test_accuracy": result.accuracy, "test_loss": result.loss, "member_test_accuracy": members,
                        "test_mistakes_most_members_make": shared,
                        "test_dataset": {"name": data.name, "sha256": data.sha256, "source": data.source}},
               sources=[m if m in shipped else str(Path(m).resolve()) for m in args.models])
    for ref, acc in zip(args.models, members):
        print(f"  {acc:.2%}  {ref}")
    print(f"ensemble of {len(members)}: test accuracy {result.accuracy:.2%} → {args.out}")
    if result.mistakes:
        print(f"  {shared} of its {result.mistakes} mistakes are made by most members on their own (an average "
              "seldom undoes those)")


def _recognizer(args: argparse.Namespace, **options):
    from convnet.infer import DEFAULT_MIN_CONFIDENCE, Recognizer

    if args.model == "":  # not a quiet way to ask for the shipped model, which leaving --model out is
        raise ConfigError("--model is empty; name a run folder, a model file or a shipped model, or leave it out.")
    confidence = DEFAULT_MIN_CONFIDENCE if args.min_confidence is None else args.min_confidence
    return Recognizer.load(args.model, device=args.device, min_confidence=confidence, **options)


def _model_hint(path: str) -> str:
    """For an image path that is a model (`convnet predict runs/x digit.png`, as `evaluate` takes it): the fix."""
    from convnet.checkpoint import is_model

    if not is_model(path):
        return ""
    return f"; that is a model: to recognise images with it, give it as --model {shlex.quote(path)}"


def cmd_predict(args: argparse.Namespace) -> int:
    from convnet.infer import expand_paths

    recognizer = _recognizer(args, top_k=args.top_k)
    skipped: list[str] = []
    return _each_file(recognizer.predict_files(expand_paths(args.paths, skipped)), skipped,
                      _prediction_json if args.json else _prediction_text)


def _prediction_json(p: Prediction) -> str:
    d = p.to_dict(probabilities=False)
    return json.dumps({k: d[k] for k in ("path", "label", "confidence", "top_k", "reason", "error")})


def _prediction_text(p: Prediction) -> str:
    if p.error:
        return _error_line(p)
    top = "  ".join(f"{label}:{_percent(q)}" for label, q in p.top_k)
    answer = p.label if p.label is not None else f"? ({p.reason})"
    return f"{_one_line(p.path)}: {answer}   {top}"


def _percent(q: float) -> str:
    """A probability with one decimal, as the lines of `predict` and `read` give it: short of certainty never
    "100.0%", which rounding made of 0.9998 (">99.9%"), and above none never "0.0%" ("<0.1%")."""
    return ">99.9%" if 0.9995 <= q < 1 else "<0.1%" if 0 < q < 0.0005 else f"{q:.1%}"


def _each_file(results: Iterable[Prediction | Reading], skipped: list[str], line: Callable[[typing.Any], str]) -> int:
    """Print each file's answer (`predict`'s or `read`'s) as a line, then on standard error what the folders and globs
    left out and how many inputs failed; the exit status: 1 if any failed."""
    from convnet.infer import walked_image

    failed = 0
    read: set[str] = set()
    for result in results:
        failed += result.error is not None
        if not walked_image(os.path.basename(result.path)):
            read.add(result.path)  # a file a walk would leave out, named to be read: only those, so memory stays flat
        print(line(result))
    # The other files of a folder or a glob: said, not read. Each once (`**` walks a subfolder again under each
    # folder above it, and matches its files too), and not those named to be read.
    if left_out := sorted(set(skipped) - read):
        print(f"convnet: {len(left_out)} file(s) or folder(s) of the folders and globs left out, as hidden or not "
              f"named as images (first: {left_out[0]}); name a file to read it", file=sys.stderr)
    if failed:  # files, and folders with no images or patterns that match none: "file(s)" miscounted those
        print(f"convnet: {failed} input(s) could not be read", file=sys.stderr)
    return 1 if failed else 0


def _error_line(result: Prediction | Reading) -> str:
    """A file that failed, as `predict` and `read` print it among the answers: the message names the path too, for
    the JSON lines; once is enough here."""
    message = result.error.removeprefix(f"{result.path}: ")
    return f"{_one_line(result.path)}: error: {_one_line(message)}{_model_hint(result.path)}"


def _one_line(text: str) -> str:
    """A file name as predict prints it, one answer a line: line breaks and other control characters escaped."""
    return re.sub(r"[\x00-\x1f\x7f]", lambda m: m.group().encode("unicode_escape").decode(), text)


def cmd_read(args: argparse.Namespace) -> int:
    from convnet.infer import expand_paths

    recognizer = _recognizer(args)
    skipped: list[str] = []
    items = expand_paths(args.paths, skipped)
    first = list(itertools.islice(items, 2))
    readings = recognizer.read_files(itertools.chain(first, items))
    # One file named (not a folder or a glob): its number alone, without its name, as grep gives one file's lines.
    if len(args.paths) == 1 and len(first) == 1 and os.path.normpath(first[0][0]) == os.path.normpath(args.paths[0]):
        return _one_reading(next(readings), args.json)
    return _each_file(readings, skipped, _reading_json if args.json else _reading_text)


def _one_reading(reading: Reading, as_json: bool) -> int:
    if as_json:
        print(_reading_json(reading))
    elif reading.error:
        print(f"convnet: error: {reading.error}{_model_hint(reading.path)}", file=sys.stderr)
    else:
        print(_number(reading))
    return 1 if reading.error else 0


def _reading_json(reading: Reading) -> str:
    return json.dumps({"path": reading.path, **reading.to_dict()})  # keyed as predict's lines: the path first


def _reading_text(reading: Reading) -> str:
    return _error_line(reading) if reading.error else f"{_one_line(reading.path)}: {_number(reading)}"


def _number(reading: Reading) -> str:
    """The number read, or "?", and its digits; an unsure digit shows its best guess with a "?": which one failed,
    and how far it was from the threshold."""
    digits = "  ".join(f"{d.label or d.top_k[0][0] + '?'}:{_percent(d.confidence)}" for d in reading.digits)
    said = ": ".join(part for part in (reading.reason, digits) if part)
    return f"{reading.number if reading.number is not None else '?'}   ({said})"


COMMANDS = {"data": cmd_data, "models": cmd_models, "train": cmd_train, "evaluate": cmd_evaluate,
            "ensemble": cmd_ensemble, "predict": cmd_predict, "read": cmd_read}


def main(argv: Sequence[str] | None = None, program: bool = False) -> int:
    """Run one command line; the exit status. `program`: as the `convnet` program, deaf to Ctrl-C and SIGTERM once
    the command has ended and said so (see `console`)."""
    # Started with `>&-` (no stdout at all) or closed from Python: every answer would vanish without a word.
    if sys.stderr is None or getattr(sys.stderr, "closed", False):  # `2>&-`: print(file=None) writes to stdout
        sys.stderr = open(os.devnull, "w")  # messages go nowhere, as asked; stdout keeps to results
    if sys.stdout is None or getattr(sys.stdout, "closed", False):
        print("convnet: error: standard output is closed; nothing could be printed", file=sys.stderr)
        return 1
    def run() -> int | None:
        args = build_parser().parse_args(argv)  # in here, so that Ctrl-C while parsing is a clean stop too
        code = COMMANDS[args.command](args)
        sys.stdout.flush()  # now, not at exit: a failure is still this command's to report
        if program:  # from here on there is nothing left to stop, only to tidy up
            _deaf_to_stops()
        return code

    stdout, sys.stdout = sys.stdout, _Output(sys.stdout)
    try:
        with sigterm_as_ctrl_c():
            return report_errors(run, "convnet")
    finally:
        sys.stdout = stdout


def console() -> int:
    """The `convnet` program: `main`, deaf to Ctrl-C and SIGTERM from the moment its command has ended and said so
    until the interpreter has shut down. Else a Ctrl-C landing then printed Python's traceback (as the handlers
    were put back, or from an exit handler), and a SIGTERM, once SIGTERM's own handler was back, ended it with 143."""
    return main(program=True)


if __name__ == "__main__":
    sys.exit(console())
