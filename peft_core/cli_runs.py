"""CLI verbs over saved runs: ``predict``, ``evaluate``, ``export`` and ``runs`` (``python -m peft_core VERB``).

- ``predict --run DIR --data FILE [--output OUT.csv]``: score a table (the run's text column, and its second text
  column for pairs) or a zip of images with a saved run; ``--bundle ZIP`` instead scores it with an exported
  bundle's own ``predict.py`` (ONNX Runtime only). Writes every input row with its prediction.
- ``evaluate --run DIR --data FILE``: a labelled file with the training file's columns, scored as the held-out split
  is at the end of training (the same report: metrics beside the task kind's baseline, per-class / per-label
  scores), with the run's own decision thresholds.
- ``export --run DIR``: the ONNX bundles of a saved run (parity checked, int8 gated), as ``train --export`` makes.
- ``runs --dir DIR``: the runs under a folder (app job folders or ``train --out`` folders) with their metrics.

A run folder is what ``train --out`` or the app writes (``model/``, ``config.json``, ``report.json``). ``evaluate``
and ``export`` rebuild the run (``runstore.load_run``), which reads its training file again (an app run keeps a copy
in its folder). Errors a user can cause are one line and exit status 2, as for ``train``.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from .errors import DataError
from .scoring import image_inputs, model_dir


def add_parsers(sub) -> None:
    """Add the four verbs to ``python -m peft_core``'s sub-parsers."""
    p = sub.add_parser("predict", help="score a file with a saved run or an exported bundle")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--run", help="run folder (from train --out, or the app's runs folder)")
    src.add_argument("--bundle", help="exported bundle zip (scored with its own predict.py)")
    p.add_argument("--data", required=True, help="CSV / TSV / JSON / JSONL / Parquet table, or a zip of images")
    p.add_argument("--output", help="CSV to write (default: print the first rows)")
    e = sub.add_parser("evaluate", help="score a saved run on a new labelled file (the training report)")
    e.add_argument("--run", required=True, help="run folder")
    e.add_argument("--data", required=True, help="labelled file with the training file's columns")
    x = sub.add_parser("export", help="export a saved run to ONNX bundles (parity checked, int8 gated)")
    x.add_argument("--run", required=True, help="run folder")
    r = sub.add_parser("runs", help="list the runs under a folder, with their metrics")
    r.add_argument("--dir", required=True, help="folder holding run folders (PEFT_RUNS_DIR, or train --out parents)")


def cmd_predict(args) -> int:
    if args.bundle:
        return _predict_with_bundle(Path(args.bundle), Path(args.data), args.output)
    from .scoring import score_file

    with tempfile.TemporaryDirectory(prefix="peft_predict_") as tmp:
        frame = score_file(args.run, args.data, Path(tmp))
    _write(frame, args.output)
    return 0


def _write(frame, output: str | None) -> None:
    if output:
        frame.to_csv(output, index=False)
        print(f"{len(frame)} rows with predictions written to {output}")
    else:
        print(frame.head(20).to_string(index=False))
        if len(frame) > 20:
            print(f"... {len(frame) - 20} more rows (--output FILE.csv writes them all)")


def _predict_with_bundle(bundle: Path, data: Path, output: str | None) -> int:
    """Score ``data`` with the bundle's own predict.py (its CSV mode), unzipped into a temporary folder."""
    if not bundle.is_file():
        raise DataError(f"bundle not found: {bundle}")
    if not zipfile.is_zipfile(bundle):
        raise DataError(f"{bundle.name} is not a zip; give the bundle-*.zip that export wrote")
    with tempfile.TemporaryDirectory(prefix="peft_bundle_") as tmp:
        with zipfile.ZipFile(bundle) as z:
            for info in z.infolist():  # our own export, but refuse names that would leave the folder anyway
                if info.filename.startswith("/") or ".." in Path(info.filename).parts:
                    raise DataError(f"{bundle.name}: entry {info.filename!r} would be written outside the folder")
            z.extractall(tmp)
        script = next(Path(tmp).rglob("predict.py"), None)
        if script is None:
            raise DataError(f"{bundle.name} has no predict.py; give the bundle-*.zip that export wrote")
        if data.suffix.lower() == ".zip":  # an image bundle's predict.py takes image files or folders
            images = Path(tmp) / "_images"
            images.mkdir()
            image_inputs(data, images)
            cmd = [sys.executable, str(script), str(images)]
        else:
            cmd = [sys.executable, str(script), "--csv", str(data.resolve())]
        cmd += ["--output", str(Path(output).resolve())] if output else []
        return subprocess.run(cmd, cwd=script.parent, check=False).returncode


def cmd_evaluate(args) -> int:
    from .scoring import evaluate_file

    with tempfile.TemporaryDirectory(prefix="peft_eval_") as tmp:
        report, rows = evaluate_file(args.run, args.data, Path(tmp))
    print(f"== Evaluation of run {Path(args.run).name} on {Path(args.data).name} ({rows} rows)")
    print(report.to_markdown().replace("**", ""))
    print(report.metrics_table().to_string(index=False, na_rep="n/a"))
    per_class = report.per_class_table()
    if 0 < len(per_class) <= 30:
        print(per_class.to_string(index=False))
    return 0


def cmd_export(args) -> int:
    from exporters.run_export import export_run

    from .runstore import load_run

    model_dir(args.run)
    return print_export(export_run(load_run(args.run)))


def print_export(res) -> int:
    """Print an export's parity table, verdict and bundles -> exit status (1: parity failed, no bundle)."""
    print("== Export\n" + res.parity.to_table().to_string(index=False))
    print(res.message)
    if res.bundle is None:
        return 1
    for precision, path in res.bundles.items():
        print(f"Bundle ({precision}{', default' if path == res.bundle else ''}): {path}")
    return 0


def run_rows(root: Path) -> list[dict]:
    """One row per run folder under ``root`` (those with a report.json or a status.json), newest first."""
    rows = []
    for d in sorted(p for p in Path(root).iterdir() if p.is_dir()):
        report, status = d / "report.json", d / "status.json"
        if not report.is_file() and not status.is_file():
            continue
        row = {"run": d.name, "state": "finished" if report.is_file() else "?", "task": "", "method": "",
               "score": None, "baseline": None, "metric": "", "time": d.stat().st_mtime}
        try:
            if status.is_file():
                s = json.loads(status.read_text())
                res = s.get("results") or {}
                row |= {"state": s.get("state", "?"), "method": s.get("method", ""), "task": res.get("task", ""),
                        "score": res.get("score"), "baseline": res.get("baseline_score"),
                        "metric": res.get("score_name", ""), "time": s.get("created", row["time"])}
            elif report.is_file():
                from .tasks import report_from_dict

                saved = json.loads(report.read_text())["evaluation"]
                ev = report_from_dict(saved)
                cfg = json.loads((d / "config.json").read_text())["run"] if (d / "config.json").is_file() else {}
                row |= {"method": cfg.get("method", ""), "task": saved.get("task", "single_label"),
                        "score": ev.headline, "baseline": ev.baseline_headline, "metric": ev.headline_name}
        except (OSError, ValueError, KeyError, TypeError):
            row["state"] = "unreadable"
        rows.append(row)
    return sorted(rows, key=lambda r: r["time"], reverse=True)


def cmd_runs(args) -> int:
    import pandas as pd

    root = Path(args.dir)
    if not root.is_dir():
        raise DataError(f"no folder {root}")
    rows = run_rows(root)
    if not rows:
        print(f"no runs under {root}")
        return 0
    df = pd.DataFrame(rows)
    df["time"] = pd.to_datetime(df["time"], unit="s").dt.strftime("%Y-%m-%d %H:%M")
    for col in ("score", "baseline"):
        df[col] = df[col].map(lambda v: "" if v is None or v != v else f"{v:.4f}")
    print(df[["run", "state", "task", "method", "metric", "score", "baseline", "time"]].to_string(index=False))
    return 0


COMMANDS = {"predict": cmd_predict, "evaluate": cmd_evaluate, "export": cmd_export, "runs": cmd_runs}
