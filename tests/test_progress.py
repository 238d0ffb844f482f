"""Progress bars have a total and an ETA; with a time budget, the total and the ETA are the budget's."""
from djenerator import train_report
from djenerator.train_report import bar_postfix, progress_bar as _bar


def test_budget_bar_counts_seconds_towards_the_budget(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(train_report.time, "perf_counter", lambda: now[0])
    bar = _bar(0, 100_000, True, max_seconds=4.0, t_start=99.0)  # training started a second ago (set-up counts)
    assert bar.total == 4.0 and bar.n == 1.0
    now[0] = 101.5
    bar.update(1)  # one step: the bar moves to the time spent, not by one
    assert bar.n == 2.5
    now[0] = 110.0
    bar.update(1)
    assert bar.n == 4.0  # past the budget: full, not over
    bar.set_postfix_str(bar_postfix({"step": 7, "d_loss": 1.0, "g_loss": 0.5, "steps_per_s": 3.2}, 100_000))
    line = str(bar)
    assert "s of the time budget, ETA" in line and "step 7/100000, D loss 1.000, G loss 0.500, 3.20 steps/s" in line
    bar.close()


def test_step_bar_has_a_total():
    bar = _bar(5, 50, True)
    assert bar.total == 50 and bar.n == 5
    bar.close()
    assert _bar(0, 10, False) is None
    assert bar_postfix({"step": 1, "d_loss": 0.1, "g_loss": 0.2, "steps_per_s": 6.0}) == \
        "D loss 0.100, G loss 0.200, 6.00 steps/s"

