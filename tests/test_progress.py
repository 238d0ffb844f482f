"""Progress bars have a total and an ETA; with a time budget, the total and the ETA are the budget's."""
from djenerator.train_report import bar_postfix, progress_bar as _bar


def test_budget_bar_counts_seconds_towards_the_budget(monkeypatch):
    from djenerator import budget as bmod

    now = [99.0]
    monkeypatch.setattr(bmod.time, "perf_counter", lambda: now[0])
    budget = bmod.Budget(max_seconds=4.0)  # the budget starts before set-up, so set-up counts
    now[0] = 100.0
    bar = _bar(0, 100_000, True, budget)
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


def test_cpu_budget_bar_counts_cpu_seconds(monkeypatch):
    """--cpu-minutes: the bar's total is the CPU budget, not the step count (which the budget may cut short)."""
    from djenerator import budget as bmod

    cpu = [10.0]
    monkeypatch.setattr(bmod.time, "process_time", lambda: cpu[0])
    budget = bmod.Budget(max_cpu_seconds=60.0)
    cpu[0] = 25.0
    bar = _bar(0, 100_000_000, True, budget)
    assert bar.total == 60.0 and bar.n == 15.0
    cpu[0] = 40.0
    bar.update(1)
    assert bar.n == 30.0
    assert "30/60 CPU-s of the CPU budget, ETA" in str(bar)
    bar.close()
    assert not bmod.Budget().limited and bmod.Budget(max_cpu_seconds=1).limited


def test_step_bar_has_a_total():
    bar = _bar(5, 50, True)
    assert bar.total == 50 and bar.n == 5
    bar.close()
    assert _bar(0, 10, False) is None
    assert bar_postfix({"step": 1, "d_loss": 0.1, "g_loss": 0.2, "steps_per_s": 6.0}) == \
        "D loss 0.100, G loss 0.200, 6.00 steps/s"

