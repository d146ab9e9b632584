"""Ctrl-C and SIGTERM held back while work must not be cut in half."""
import signal

import pytest

from convnet import interrupt

BOTH = (signal.SIGINT, signal.SIGTERM)


@pytest.fixture
def sigterm_as_ctrl_c():
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)  # as the `convnet` command sets it
    yield
    signal.signal(signal.SIGTERM, previous)


def _interrupted_at(monkeypatch, call: int) -> None:
    """signal.signal raises KeyboardInterrupt at its `call`-th call, before it changes anything, as CPython does
    with a Ctrl-C pending."""
    real, calls = signal.signal, []

    def once(signum, handler):
        calls.append(signum)
        if len(calls) == call:
            raise KeyboardInterrupt
        return real(signum, handler)

    monkeypatch.setattr(signal, "signal", once)


def test_a_ctrl_c_as_the_handlers_go_in_counts_as_pressed(monkeypatch, sigterm_as_ctrl_c):
    _interrupted_at(monkeypatch, 2)  # the first handler is in, the second not yet
    with interrupt.ctrl_c_held() as pressed:
        assert pressed == [True]
        assert all(signal.getsignal(s) is not signal.default_int_handler for s in BOTH)
    assert all(signal.getsignal(s) is signal.default_int_handler for s in BOTH)


def test_a_ctrl_c_as_the_handlers_come_out_is_raised_once_all_are_back(monkeypatch, sigterm_as_ctrl_c):
    _interrupted_at(monkeypatch, 4)  # both went in; the first is back, the second not yet
    with pytest.raises(KeyboardInterrupt), interrupt.ctrl_c_held() as pressed:
        assert pressed == []
    assert all(signal.getsignal(s) is signal.default_int_handler for s in BOTH)
