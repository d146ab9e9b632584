"""Ctrl-C held back while something must not be cut in half: a run's files, or the package's own imports.

Imports only the standard library: the package's `__init__` uses it before PyTorch loads.
"""
from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def ctrl_c_held() -> Iterator[list[bool]]:
    """Hold Ctrl-C back inside, e.g. while a run's files are written, so that they never disagree with each other.

    Yields a list that gets an entry if Ctrl-C was pressed meanwhile: the caller decides what that means once the
    work is whole. SIGTERM is held too where `sigterm_as_ctrl_c` made it a Ctrl-C. Only the main thread may set a
    signal handler, and one set by someone else is left alone.
    """
    pressed: list[bool] = []
    main = threading.current_thread() is threading.main_thread()
    held = [s for s in (signal.SIGINT, signal.SIGTERM) if main and signal.getsignal(s) is signal.default_int_handler]
    previous, came = _swap({s: lambda signum, frame: pressed.append(True) for s in held})
    if came is not None:  # pressed while the handlers went in: held like the rest
        pressed.append(True)
    try:
        yield pressed
    finally:
        _, came = _swap(previous)
        if came is not None:  # pressed as the handlers came out, once they are all back: Python's Ctrl-C
            raise came


def _swap(handlers: dict) -> tuple[dict, KeyboardInterrupt | None]:
    """Set several signal handlers, all of them even if Ctrl-C (or SIGTERM made one) comes meanwhile; returns the
    handlers replaced, and that KeyboardInterrupt, if one came, for the caller to act on once all are in place.

    Left to escape, it would leave a handler half swapped in for good: a Ctrl-C or `kill` ignored from then on.
    (Blocking the signals would not do: the other threads, which PyTorch starts, would still take them.) Python can
    raise between any two steps, so a second signal in the microseconds outside the `try` is still not covered.
    """
    previous = {s: signal.getsignal(s) for s in handlers}  # an interrupt here has changed nothing yet
    remaining, came = list(handlers.items()), None
    while remaining:
        try:
            while remaining:
                signal.signal(*remaining[0])  # setting one twice, after an interrupt, does no harm
                remaining.pop(0)
        except KeyboardInterrupt as e:
            came = e
    return previous, came


@contextmanager
def sigterm_as_ctrl_c() -> Iterator[None]:
    """SIGTERM (from `kill`, `timeout` or a batch system) stops a command inside as Ctrl-C does: cleanly, with what
    it made whole or taken back, rather than at once with a half-made folder left behind."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        yield
        return
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        yield
    finally:
        if signal.getsignal(signal.SIGTERM) is signal.default_int_handler:  # not if set since (to ignore it, say)
            signal.signal(signal.SIGTERM, previous)


@contextmanager
def deferred() -> Iterator[None]:
    """Short work that Ctrl-C must not cut in half: a Ctrl-C pressed inside raises KeyboardInterrupt on leaving.

    Some libraries turn an interrupt that lands inside them into another error: safetensors, reading weights, raised
    a ValueError about an UntypedStorage; an import cut short leaves its modules half made.
    """
    with ctrl_c_held() as pressed:
        yield
    if pressed:
        raise KeyboardInterrupt


@contextmanager
def imports_held(prog: str) -> Iterator[None]:
    """The imports inside finish before a Ctrl-C pressed meanwhile stops the program, with `prog: interrupted`.

    Loading PyTorch takes a second or more; cut short, it would also print a traceback of import machinery. The
    package's modules loaded inside are forgotten again, so that importing it once more starts afresh.
    """
    package = __name__.partition(".")[0]
    before = set(sys.modules)
    try:
        with deferred():
            yield
    except KeyboardInterrupt as e:
        stop, previous = e, sys.excepthook  # `e` is unbound when the except block ends; the hook needs it later

        def quiet(kind, value, traceback):  # this Ctrl-C, if nothing catches it; anything else as before
            if value is stop:
                print(f"{prog}: interrupted", file=sys.stderr)
            else:
                previous(kind, value, traceback)

        with ctrl_c_held():  # a second Ctrl-C meanwhile would take this one's place, with Python's traceback
            for name in set(sys.modules) - before:
                if name.startswith(package + "."):
                    del sys.modules[name]
            sys.excepthook = quiet
        raise
