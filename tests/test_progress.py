"""Progress during long loops: a bar on a terminal, a line now and then elsewhere."""
import pytest

from convnet import progress


@pytest.mark.parametrize("enabled, lines", [(None, 2), (False, 0)])  # False: another torchrun rank, which is quiet
def test_without_a_terminal_the_log_gets_a_line_now_and_then(monkeypatch, enabled, lines):
    monkeypatch.setattr(progress.sys.stderr, "isatty", lambda: False)  # a pipe or a log file
    monkeypatch.setattr(progress, "PLAIN_EVERY", 0.0)
    said: list[str] = []
    with progress.progress_bar("epoch 2/5", 400, enabled=enabled, log=said.append) as bar:
        bar.update(100, "loss 0.2000")
        bar.update(300, "loss 0.1000")
    assert said == ["epoch 2/5: 100/400 steps  loss 0.2000", "epoch 2/5: 300/400 steps  loss 0.1000"][:lines]


def test_lines_are_spaced_out(monkeypatch):
    monkeypatch.setattr(progress.sys.stderr, "isatty", lambda: False)
    clock = iter([0.0, 30.0, 61.0, 90.0, 125.0])  # the bar's start, then one reading per update
    monkeypatch.setattr(progress.time, "perf_counter", lambda: next(clock))
    said: list[str] = []
    with progress.progress_bar("epoch 1/1", 4, log=said.append) as bar:
        for step in range(4):
            bar.update(step + 1, "")
    assert [line.split(": ")[1].split()[0] for line in said] == ["2/4", "4/4"]  # at 61 s and at 125 s


def test_a_bar_with_nowhere_to_go_says_so(monkeypatch):
    monkeypatch.setattr(progress.sys.stderr, "isatty", lambda: False)
    with progress.progress_bar("epoch 1/1", 4, enabled=False, log=print) as quiet:
        assert not quiet.active  # another torchrun rank: the loop skips the syncs that updates cost
    with progress.progress_bar("epoch 1/1", 4, log=print) as logged:
        assert logged.active
