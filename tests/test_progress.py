"""Progress during long loops: a bar on a terminal, a line now and then elsewhere."""
from convnet import progress


def _without_a_terminal(monkeypatch) -> list[float]:
    """stderr is a pipe or a log file; returns the clock the bar reads, to be moved by the test."""
    monkeypatch.setattr(progress.sys.stderr, "isatty", lambda: False)
    now = [0.0]
    monkeypatch.setattr(progress.time, "perf_counter", lambda: now[0])
    return now


def test_without_a_terminal_the_log_gets_a_line_every_so_often(monkeypatch):
    now, said = _without_a_terminal(monkeypatch), []
    with progress.progress_bar("epoch 2/5", 400, log=said.append) as bar:
        for step, seconds in enumerate([30.0, 61.0, 90.0, 125.0], 1):
            now[0] = seconds
            if bar.due():
                bar.update(100 * step, f"loss {1 / step:.4f}")
    assert said == ["epoch 2/5: 200/400 steps  loss 0.5000", "epoch 2/5: 400/400 steps  loss 0.2500"]  # 61, 125 s


def test_a_quiet_bar_is_never_due(monkeypatch):
    now = _without_a_terminal(monkeypatch)
    with progress.progress_bar("epoch 1/1", 4, enabled=False, log=print) as quiet:  # another torchrun rank
        now[0] += 1000.0
        assert not quiet.due()
    with progress.progress_bar("epoch 1/1", 4) as unlogged:  # no log to write to
        now[0] += 1000.0
        assert not unlogged.due()
    with progress.progress_bar("epoch 1/1", 4, log=print) as logged:
        now[0] += 1000.0
        assert logged.due()
