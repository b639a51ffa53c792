"""Time estimates per phase (peft_core.progress): each phase is estimated from its own pace, never from the
caching that came before it; durations read in words."""
import pytest

from peft_core.callbacks import ProgressEvent
from peft_core.progress import format_duration, summarize


def phase(name, done, total, elapsed_s):
    return ProgressEvent("phase", done, total, message=name, elapsed_s=elapsed_s).to_dict()


def head_run_events(steps_done: int) -> list[dict]:
    """A head run as the trainer logs it: 3 s preparing, 300 s caching 1,000 rows, then 600 planned steps at
    0.1 s each (the step events' clock counts from when ``train`` began, caching included)."""
    events = [phase("preparing", 0, 2, 0.0), phase("preparing", 1, 2, 1.0), phase("preparing", 2, 2, 3.0)]
    events += [phase("encoding", done, 1000, done * 0.3) for done in range(0, 1001, 100)]
    events.append(ProgressEvent("start", 0, 600, message="800 training rows", elapsed_s=300.0).to_dict())
    events.append(phase("training", 0, 600, 0.0))
    events += [ProgressEvent("step", s, 600, s / 60, 0.5, elapsed_s=300.0 + 0.1 * s).to_dict()
               for s in range(1, steps_done + 1)]
    return events


def test_training_eta_comes_from_training_steps_only():
    p = summarize(head_run_events(steps_done=30))
    assert (p.phase, p.phase_done, p.phase_total) == ("training", 30, 600)
    assert p.phase_elapsed_s == pytest.approx(3.0)
    # 570 steps left at 0.1 s each; the old estimate projected the caching over every epoch (~5,700 s)
    assert p.eta_s == pytest.approx(57.0) and p.phase_eta_s == pytest.approx(57.0)
    assert p.elapsed_s == pytest.approx(303.0)  # the run's clock still counts the caching
    assert "encoding done in 5 min 0 s" in p.log


def test_each_phase_estimates_itself_and_says_estimating_until_it_has_a_basis():
    events = head_run_events(steps_done=0)
    enc = 3  # after the three preparing events
    p = summarize(events[:enc + 1])  # encoding started, nothing done yet
    assert (p.phase, p.phase_done, p.phase_total, p.phase_eta_s, p.eta_s) == ("encoding", 0, 1000, None, None)
    assert p.log[-1] == "encoding: computing the frozen layers' outputs once for 1,000 rows"
    p = summarize(events[:enc + 4])  # 300 rows in 90 s
    assert p.phase_done == 300 and p.phase_eta_s == pytest.approx(210.0)
    assert p.eta_s is None  # nothing says yet how long training will take
    p = summarize(events[:enc + 11])
    assert p.phase_eta_s == 0.0 and p.phase_fraction == 1.0
    p = summarize(head_run_events(steps_done=1))  # one step is no basis
    assert p.phase == "training" and p.phase_eta_s is None and p.eta_s is None
    p = summarize(head_run_events(steps_done=5))  # five steps in 0.5 s: still none
    assert p.phase_eta_s is None


def test_evaluating_has_its_own_estimate():
    events = head_run_events(steps_done=600) + [phase("training", 600, 600, 60.0),
                                                ProgressEvent("end", 600, 600, message="finished",
                                                              elapsed_s=360.0).to_dict()]
    p = summarize(events)
    assert p.phase == "evaluating" and p.eta_s is None
    events += [phase("evaluating", 0, 200, 0.0), phase("evaluating", 64, 200, 4.0)]
    p = summarize(events)
    assert (p.phase_done, p.phase_total) == (64, 200) and p.eta_s == pytest.approx(4.0 / 64 * 136)
    p = summarize(events + [phase("evaluating", 200, 200, 12.0)])
    assert p.eta_s == 0.0 and p.log[-1] == "evaluating done in 12 s"


@pytest.mark.parametrize("seconds,words", [(None, "estimating…"), (0, "0 s"), (12.4, "12 s"), (59.6, "1 min 0 s"),
                                           (252, "4 min 12 s"), (3599.4, "59 min 59 s"), (3600, "1 h 00 min"),
                                           (3900, "1 h 05 min"), (106_848, "29 h 41 min"), (-3, "0 s")])
def test_format_duration(seconds, words):
    assert format_duration(seconds) == words
