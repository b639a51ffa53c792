"""Budgeted search (peft_core.search): the loop with a scripted runner (pruning, the budget, choosing by validation
only), then one real short search through the CLI whose trials are normal run folders."""
import json
from pathlib import Path

import optuna
import pytest

from peft_core.search import SameMethodPruner, TrialOutcome, leaderboard, make_study, run_search, sample
from peft_core.methods import METHODS
from peft_core.pipeline import RunConfig

from conftest import sms_subset


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class FakeHandle:
    """A run that finishes one epoch (``epoch_s`` fake seconds) each time the search looks at it."""

    def __init__(self, clock, curve, test_accuracy, epoch_s):
        self.clock, self.curve, self.test_accuracy, self.epoch_s = clock, list(curve), test_accuracy, epoch_s
        self.run_id, self.run_dir = "fake", Path("fake")
        self.scores, self.stopped = [], False

    def done(self):
        if not self.stopped and len(self.scores) < len(self.curve):
            self.clock.now += self.epoch_s
            self.scores.append(self.curve[len(self.scores)])
        return self.stopped or len(self.scores) == len(self.curve)

    def val_scores(self):
        return list(self.scores)

    def stop(self):
        self.stopped = True

    def evaluating(self):
        return False

    def outcome(self):
        results = {"best_val_score": max(self.scores), "accuracy": self.test_accuracy, "macro_f1": self.test_accuracy,
                   "val_score_name": "macro-F1"} if self.scores else {}
        return TrialOutcome("cancelled" if self.stopped else "finished", bool(self.scores), results)


class FakeRunner:
    """Trial n follows ``curves[n]``; its test accuracy is 1 - its final validation score (the opposite order)."""

    def __init__(self, clock, curves, epoch_s=10.0):
        self.clock, self.curves, self.epoch_s, self.handles, self.configs = clock, curves, epoch_s, [], []

    def start(self, number, cfg, name):
        curve = self.curves[number % len(self.curves)]
        self.configs.append(cfg)
        self.handles.append(FakeHandle(self.clock, curve, 1 - curve[-1], self.epoch_s))
        return self.handles[-1]


def base():
    return RunConfig(train_file="examples/sms_spam.csv")


def test_median_pruner_stops_a_bad_trial_and_the_budget_cuts_the_last_one():
    clock = FakeClock()
    good = [[0.5, 0.7, 0.8, 0.85], [0.55, 0.75, 0.82, 0.9], [0.6, 0.8, 0.85, 0.88]]
    bad, top = [0.1, 0.12, 0.13, 0.14], [0.7, 0.8, 0.9, 0.95]
    runner = FakeRunner(clock, good + [bad, top])
    seen = []
    # 3 x 4 epochs x 10 s complete, the bad 4th is pruned after epoch 2 (20 s): 140 s; the 5th is cut at 165 s
    result = run_search(base(), 165, runner, methods=["head"], seed=0, clock=clock, poll_s=0,
                        on_trial=lambda rec: seen.append((rec.number, rec.state)))
    states = [t.state for t in result.trials]
    assert states == ["complete", "complete", "complete", "pruned", "cut"], states
    assert runner.handles[3].stopped and len(result.trials[3].val_scores) == 2  # stopped at the first prunable epoch
    assert runner.handles[4].stopped and result.trials[4].val_scores == top[:3]  # deadline passed at epoch 3 (170 s)
    assert result.ended == "budget" and all(t.started_s < 165 for t in result.trials)
    assert (0, "running") in seen and (3, "pruned") in seen  # on_trial at start and at the end of each trial
    assert [t.state for t in result.study.trials] == [optuna.trial.TrialState.COMPLETE] * 3 + [
        optuna.trial.TrialState.PRUNED] * 2
    # every trial is a config of the base data with sampled values inside the head's search space
    for cfg, t in zip(runner.configs, result.trials):
        assert cfg.method == "head" and cfg.train_file == base().train_file and cfg.train.seed == base().train.seed
        knobs = {k.field: k for k in METHODS["head"].search_space}
        assert all(knobs[f].low <= getattr(cfg.train, f) <= knobs[f].high for f in knobs)
        assert t.params["epochs"] == cfg.train.epochs


def test_the_best_is_chosen_by_validation_score_never_by_test_metrics():
    clock = FakeClock()
    curves = [[0.6, 0.7], [0.8, 0.95], [0.7, 0.9], [0.5, 0.6]]
    result = run_search(base(), 75, FakeRunner(clock, curves), methods=["head"], seed=1, clock=clock, poll_s=0)
    assert len(result.trials) == 4
    board = result.leaderboard()
    vals = board["validation macro-F1"].tolist()
    assert vals == sorted(vals, reverse=True)  # sorted by validation score
    assert board.iloc[0]["best"] == "★" and (board["best"] == "★").sum() == 1
    assert result.best.val_score == max(vals) == 0.95
    # the fake test accuracy runs opposite to validation: choosing by test would have picked another trial
    assert result.best.test["accuracy"] == min(board["test accuracy"])
    assert board.iloc[0]["trial"] == 2


def test_a_method_too_slow_for_the_time_left_is_skipped_and_failing_starts_end_the_search():
    clock = FakeClock()
    # two 40 s trials leave 5 s; a trial needs 10 s to its first epoch: over 1.5 x the time left, so none starts
    result = run_search(base(), 85, FakeRunner(clock, [[0.5, 0.6, 0.7, 0.8]]), methods=["head"], clock=clock,
                        poll_s=0)
    assert len(result.trials) == 2 and result.skipped == 1 and result.ended == "no method fits the time left"

    class Full:
        def start(self, number, cfg, name):
            from peft_core.errors import JobError

            raise JobError("disk quota reached")

    result = run_search(base(), 60, Full(), methods=["head"], clock=FakeClock(), poll_s=0)
    assert [t.state for t in result.trials] == ["failed"] * 3 and result.best is None
    assert result.ended == "trials could not start: disk quota reached"


def test_a_run_already_evaluating_at_the_deadline_is_left_to_finish():
    clock = FakeClock()

    class Evaluating(FakeHandle):
        def evaluating(self):  # training has ended: a stop would throw the trained model away
            return True

    class Runner(FakeRunner):
        def start(self, number, cfg, name):
            self.handles.append(Evaluating(self.clock, [0.5, 0.6, 0.7], 0.5, self.epoch_s))
            return self.handles[-1]

    runner = Runner(clock, [])
    result = run_search(base(), 15, runner, methods=["head"], clock=clock, poll_s=0)
    assert not runner.handles[0].stopped and [t.state for t in result.trials] == ["complete"]


def test_the_stop_flag_cuts_the_running_trial_and_ends_the_search():
    from peft_core.callbacks import Control

    clock, stop = FakeClock(), Control()
    stop_at_second = lambda rec: rec.number == 1 and rec.state == "running" and stop.request_stop()  # noqa: E731
    runner = FakeRunner(clock, [[0.5, 0.6, 0.7]])
    result = run_search(base(), 1000, runner, methods=["head"], clock=clock, poll_s=0, stop=stop,
                        on_trial=stop_at_second)
    assert [t.state for t in result.trials] == ["complete", "cut"] and result.ended == "stopped"
    assert runner.handles[1].stopped and len(result.trials[1].val_scores) == 1  # kept its first epoch
    assert result.best.number == 0  # the cut trial counts too, by its validation score (0.5 < 0.7)


def test_pruner_compares_only_trials_of_the_same_method():
    clock = FakeClock()
    # last_n trials score far above head trials at every epoch; head trials must not be pruned for it
    curves = {"head": [0.2, 0.3, 0.4, 0.5], "last_n": [0.8, 0.9, 0.92, 0.93]}

    class ByMethod(FakeRunner):
        def start(self, number, cfg, name):
            self.handles.append(FakeHandle(self.clock, curves[cfg.method], 0.5, self.epoch_s))
            return self.handles[-1]

    result = run_search(base(), 600, ByMethod(clock, []), methods=["head", "last_n"], seed=0, clock=clock,
                        poll_s=0)
    assert {t.method for t in result.trials} == {"head", "last_n"}
    assert "pruned" not in [t.state for t in result.trials]  # same curves within a method: never below its median


def test_search_space_comes_from_the_registry_and_epochs_can_be_capped():
    for name, method in METHODS.items():
        study = optuna.create_study(direction="maximize")
        trial = study.ask()
        values = sample(trial, name, epoch_cap=3)
        assert {k.field for k in values} == {k.field for k in method.search_space}
        assert all(v <= 3 for k, v in values.items() if k.caps_epochs)
        assert all(p.startswith(f"{name}.") for p in trial.params)


def test_bad_budget_and_unknown_method_are_config_errors():
    from peft_core.errors import ConfigError

    with pytest.raises(ConfigError, match="budget"):
        run_search(base(), 0, FakeRunner(FakeClock(), [[0.5]]))
    with pytest.raises(ConfigError, match="unknown"):
        run_search(base(), 10, FakeRunner(FakeClock(), [[0.5]]), methods=["nope"])
    assert isinstance(make_study(0).pruner, SameMethodPruner)
    assert list(leaderboard([]).columns)[:3] == ["best", "trial", "method"]


@pytest.fixture(scope="module")
def cli_search(tmp_path_factory):
    """One real search through the CLI: linear probe only, 400 SMS rows, about 35 s, epochs capped at 6."""
    import contextlib
    import io
    import time

    from peft_core.cli import main

    folder = tmp_path_factory.mktemp("search")
    data = folder / "sms400.csv"
    sms_subset(400).to_csv(data, index=False)
    out, budget_min = folder / "out", 0.6
    t0, buf = time.monotonic(), io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(["search", "--data", str(data), "--budget-min", str(budget_min), "--methods", "head",
                     "--max-epochs", "6", "--max-length", "64", "--out", str(out)])
    return code, buf.getvalue(), out, time.monotonic() - t0, budget_min * 60, data


def test_cli_search_trials_are_normal_runs_with_a_leaderboard(cli_search, capsys):
    from peft_core.cli import main
    from peft_core.runstore import load_run

    code, text, out, wall, budget, data = cli_search
    assert code == 0, text
    doc = json.loads((out / "leaderboard.json").read_text())
    trials = doc["trials"]
    assert len(trials) >= 2, text
    assert all(t["started_s"] < budget for t in trials)  # none starts after the deadline
    assert doc["seconds"] <= budget + 20 and wall <= budget + 40  # the last trial is cut cleanly, then evaluated
    scores = [t["val_score"] for t in trials if t["val_score"] is not None]
    best = next(t for t in trials if t["best"])
    assert best["val_score"] == max(scores) and doc["best"] == best["number"] + 1
    import pandas as pd

    board = pd.read_csv(out / "leaderboard.csv")
    col = "validation macro-F1"
    assert board[col].dropna().tolist() == sorted(board[col].dropna(), reverse=True)
    assert board.iloc[0]["best"] == "★"
    assert "Export it with: python -m peft_core export --run" in text and "★" in text
    # every trial with a model is a normal run folder: listed by `runs`, loadable, usable by `predict`
    with_model = [t for t in trials if t["val_score"] is not None]
    assert main(["runs", "--dir", str(out / "trials")]) == 0
    listed = capsys.readouterr().out
    assert all(Path(t["run_dir"]).name in listed for t in with_model)
    # the linear probe's pooled features are encoded by the first trial and reused by the others
    def encoding_s(run_dir):
        events = [json.loads(line) for line in (Path(run_dir) / "events.jsonl").read_text().splitlines()]
        return max(e["elapsed_s"] for e in events if e["kind"] == "phase" and e["message"] == "encoding")

    first, *later = [encoding_s(t["run_dir"]) for t in with_model]
    assert later and max(later) < first, (first, later)
    run = load_run(best["run_dir"])
    assert run.config.method == "head" and run.train_result.best_epoch >= 1
    rows = out / "few.csv"
    pd.read_csv(data).head(5).to_csv(rows, index=False)
    assert main(["predict", "--run", best["run_dir"], "--data", str(rows)]) == 0


def test_feature_memo_keeps_features_only_inside_a_search_and_keys_on_weights_texts_and_length():
    import torch
    from torch import nn

    from peft_core import feature_memo

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = nn.Linear(3, 2)

    model, texts = Model(), {"train": ["a", "b"], "validation": ["c"]}
    feats = {"train": torch.zeros(2, 2), "validation": torch.zeros(1, 2)}
    k = feature_memo.key(model, texts, 64)
    feature_memo.put(k, feats)
    assert not feature_memo.active() and feature_memo.get(k) is None  # outside a search nothing is kept
    with feature_memo.reuse_pooled_features():
        feature_memo.put(k, feats)
        assert feature_memo.get(feature_memo.key(model, texts, 64)) is feats
        assert feature_memo.get(feature_memo.key(model, texts, 128)) is None
        assert feature_memo.get(feature_memo.key(model, {**texts, "train": ["a", "x"]}, 64)) is None
        with torch.no_grad():
            model.backbone.weight.add_(1.0)  # other weights: another encoder
        assert feature_memo.get(feature_memo.key(model, texts, 64)) is None
    assert feature_memo.get(k) is None  # emptied when the search ends
