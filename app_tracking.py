"""Page handlers of the "Report to" choice (experiment tracking, ``peft_core.tracking``): the selected run's or
an uploaded config's trackers back into the checkboxes. ``app_runs.train_model`` takes the choice into the
RunConfig; the run's log then says where each tracker wrote (the run's ``tracking/`` folder on the server)."""
from __future__ import annotations

import json
from pathlib import Path

import gradio as gr

import app_state as state
from peft_core.errors import PeftCoreError
from peft_core.tracking import parse_report_to


def report_to_of_run(owner, run_id):
    """Run selected -> the trackers it reported to; no run, or one that cannot be read: left as is."""
    if not run_id:
        return gr.skip()
    try:
        state.jobs().get(owner, run_id)  # raises JobError unless it is the owner's run
        return _from_config(state.jobs().dir(run_id) / "config.json")
    except (PeftCoreError, OSError, ValueError, KeyError, TypeError):
        return gr.skip()


def report_to_of_config(config_file):
    """An uploaded run config.json -> its trackers (none for configs saved before ``report_to``); unchanged
    when the file is not a run config (``app_data.config_to_form`` says why)."""
    try:
        return _from_config(Path(config_file))
    except (PeftCoreError, OSError, ValueError, KeyError, TypeError):
        return gr.skip()


def _from_config(path: Path) -> list[str]:
    """The ``report_to`` of a run config file. Raises OSError, ValueError, KeyError, TypeError, ConfigError."""
    return parse_report_to(json.loads(Path(path).read_text())["run"].get("report_to"))
