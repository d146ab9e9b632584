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


class _Terminal:
    """A stand-in for a terminal on stderr: rich draws to it, and what it draws is kept."""

    def __init__(self) -> None:
        self.text = ""

    def isatty(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.text += text
        return len(text)

    def flush(self) -> None:
        pass

    def fileno(self) -> int:
        return 2


def test_the_bar_is_drawn_on_stderr_and_never_on_stdout(monkeypatch, capsys):
    """It went to stdout through rich's own console, while stderr decided whether to show it: no bar on a
    terminal whose stdout was redirected, and a blank line among the results."""
    terminal = _Terminal()
    monkeypatch.setenv("TERM", "xterm")
    monkeypatch.setattr(progress.sys, "stderr", terminal)
    with progress.progress_bar("epoch 1/1", 4) as bar:
        assert bar.due()
        bar.update(2, "loss 0.5")
    assert "epoch 1/1" in terminal.text and capsys.readouterr().out == ""
    monkeypatch.setenv("TERM", "dumb")  # draws nothing there: the plain lines instead
    said: list[str] = []
    with progress.progress_bar("epoch 1/1", 4, log=said.append) as plain:
        plain.update(1, "loss 0.9")
    assert said == ["epoch 1/1: 1/4 steps  loss 0.9"]
    monkeypatch.setattr(progress.sys, "stderr", None)  # closed (2>&-): no bar, no crash
    with progress.progress_bar("epoch 1/1", 4) as none:
        assert not none.due()
