"""The leaderboard of a budgeted search (``peft_core.search``): which trial is best, the table, the saved files.

The best trial is chosen by validation score alone; test metrics are carried along to be shown.
"""
from __future__ import annotations

import json
from pathlib import Path


def mark_best(trials: list) -> object | None:
    """``trials``: ``search.TrialRecord``s. Set ``best`` on the trial with the highest validation score among those with a model (ties: the earlier
    trial) and return it; None when no trial has a score. Test metrics play no part."""
    scored = [t for t in trials if t.val_score is not None]
    for t in trials:
        t.best = False
    if not scored:
        return None
    top = max(scored, key=lambda t: (t.val_score, -t.number))
    top.best = True
    return top


def score_name(trials: list) -> str:
    """The runs' selection metric, named from their results ("validation macro-F1"), else "validation score"."""
    names = [t.test.get("val_score_name") for t in trials if t.test.get("val_score_name")]
    return f"validation {names[0]}" if names else "validation score"


def leaderboard(trials: list, score_name: str = "validation score"):
    """The trials as a pandas DataFrame, highest validation score first (trials without one last, in start order):
    columns best ("★" on the best), trial (1-based), method, settings, ``score_name`` (the objective), epochs,
    test accuracy, test macro-F1 (shown, never used to choose), state, seconds, run (id or folder)."""
    import pandas as pd

    rows = sorted(trials, key=lambda t: (t.val_score is None, -(t.val_score or 0.0), t.number))
    return pd.DataFrame([{"best": "★" if t.best else "", "trial": t.number + 1, "method": t.method,
                          "settings": t.settings(), score_name: t.val_score,
                          "epochs": len(t.val_scores), "test accuracy": t.test.get("accuracy"),
                          "test macro-F1": t.test.get("macro_f1"), "state": t.state,
                          "seconds": round(t.seconds, 1), "run": t.run_id or t.run_dir} for t in rows],
                        columns=["best", "trial", "method", "settings", score_name, "epochs", "test accuracy",
                                 "test macro-F1", "state", "seconds", "run"])


def save_leaderboard(result, out_dir: str | Path, meta: dict | None = None) -> Path:
    """Write ``leaderboard.csv`` (the :func:`leaderboard` table) and ``leaderboard.json`` (the search's
    settings, why it ended, its seconds, the best trial and every trial's record) into ``out_dir``; returns the
    JSON's path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result.leaderboard().to_csv(out / "leaderboard.csv", index=False)
    doc = {"budget_s": result.budget_s, "seconds": result.seconds, "ended": result.ended,
           "score_name": result.score_name, "skipped": result.skipped, **(meta or {}),
           "best": result.best.number + 1 if result.best else None, "trials": [t.to_dict() for t in result.trials]}
    (out / "leaderboard.json").write_text(json.dumps(doc, indent=2, default=str))
    return out / "leaderboard.json"
