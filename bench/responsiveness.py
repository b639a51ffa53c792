"""Benchmark: how fast the app answers /status and /runs while two runs train, runs in their own processes
(``PEFT_EXECUTOR=local``, the default) against runs on the app's threads (``thread``: the design before runs got
their own processes; the same code trains in both), in one run.

    python bench/responsiveness.py                       # 250 calls of each, both designs
    python bench/responsiveness.py --calls 50 --designs local   # quicker

For each design: the app (``app.py``) starts in a child process with ``PEFT_MAX_CONCURRENT_RUNS=2`` and a fresh runs
folder. One client first times /status and /runs with nothing training ("idle": the floor of a call here), then starts two ``last_n`` runs on the first 400 rows of the bundled SMS file (long enough to outlast the
calls) and, once both train, calls /status and /runs alternately, one at a time, timing each call (client-side wall
time of Gradio's HTTP API, POST then the result's event stream, with httpx on 127.0.0.1); the bench fails if a run ended before the calls did. Prints p50 / p95 /
max per design, phase and endpoint, the CPU line, and writes the table to --out.
"""
from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

HP = dict(epochs=50, batch_size=16, learning_rate=5e-5, head_learning_rate=1e-3, weight_decay=0.01,
          warmup_ratio=0.1, max_length=64, dropout=0.1, early_stopping_patience=0, seed=42, num_layers=2, lora_r=8,
          lora_alpha=16, lora_dropout=0.1, lora_targets="")


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_app(design: str, runs: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "PEFT_EXECUTOR": design, "PEFT_MAX_CONCURRENT_RUNS": "2", "PEFT_RUNS_DIR": str(runs),
           "GRADIO_SERVER_PORT": str(port), "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def _client(url: str, timeout_s: float = 180):
    from gradio_client import Client

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return Client(url, verbose=False)
        except Exception:  # noqa: BLE001 -- not serving yet
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def call(http, name: str, *args):
    """One call of the app's API endpoint ``name`` over Gradio's HTTP API, as any HTTP client makes it: POST
    /gradio_api/call/<name> (-> event id), then GET its server-sent events until "complete" -> the result."""
    import json

    event = http.post(f"/gradio_api/call/{name}", json={"data": list(args)}).raise_for_status().json()["event_id"]
    with http.stream("GET", f"/gradio_api/call/{name}/{event}") as r:
        kind = None
        for line in r.iter_lines():
            if line.startswith("event:"):
                kind = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and kind in ("complete", "error"):
                if kind == "error":
                    raise RuntimeError(f"/{name} failed: {line}")
                return json.loads(line.split(":", 1)[1])[0]
    raise RuntimeError(f"/{name} ended without a result")


def _time_calls(http, calls: int, owner: str, run_id: str) -> dict:
    lat = {"/status": [], "/runs": []}
    while min(len(v) for v in lat.values()) < calls:
        for name, args in (("status", (owner, run_id)), ("runs", (owner,))):
            t = time.perf_counter()
            call(http, name, *args)
            lat["/" + name].append(time.perf_counter() - t)
    return lat


def measure(design: str, calls: int) -> dict:
    """{"idle": latencies, "2 runs training": latencies} (seconds, per endpoint) of /status and /runs: idle = with
    nothing training (one cancelled run to ask about), then while two runs train under ``design``."""
    from gradio_client import handle_file

    port = _port()
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmp:
        app = _start_app(design, Path(tmp) / "runs", port)
        try:
            client = _client(f"http://127.0.0.1:{port}/")
            owner = client.predict(api_name="/new_owner")
            import pandas as pd

            pd.read_csv(ROOT / "examples" / "sms_spam.csv").head(400).to_csv(Path(tmp) / "sms_400.csv", index=False)
            csv = handle_file(str(Path(tmp) / "sms_400.csv"))
            first = client.predict(owner, csv, None, "text", "label", "minilm", "last_n", **HP, api_name="/train")[0]
            client.predict(owner, first, api_name="/cancel")  # a run to ask about, then nothing trains
            import httpx

            http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
            idle = _time_calls(http, max(30, calls // 5), owner, first)
            ids = [client.predict(owner, csv, None, "text", "label", "minilm", "last_n", **HP, api_name="/train")[0]
                   for _ in range(2)]
            def training(i):
                st = client.predict(owner, i, api_name="/status")
                return st["state"] == "running" and st["step"] > 0

            while not all(training(i) for i in ids):
                time.sleep(0.5)
            lat = _time_calls(http, calls, owner, ids[0])
            states = [client.predict(owner, i, api_name="/status")["state"] for i in ids]
            if states != ["running", "running"]:
                raise RuntimeError(f"the runs ended before the calls did ({states}): raise HP epochs")
            for i in ids:
                client.predict(owner, i, api_name="/cancel")
            return {"idle": idle, "2 runs training": lat}
        finally:
            app.terminate()
            try:
                app.wait(30)
            except subprocess.TimeoutExpired:
                app.kill()


def _row(design: str, when: str, name: str, xs: list[float]) -> str:
    q = statistics.quantiles(xs, n=100)
    return (f"| {design} | {when} | {name} | {len(xs)} | {1000 * statistics.median(xs):.1f} | {1000 * q[94]:.1f} | "
            f"{1000 * max(xs):.1f} |")


def main(argv=None) -> None:
    from cpu import cpu_line

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--calls", type=int, default=250, help="calls of each endpoint per design (default 250)")
    p.add_argument("--designs", default="thread,local", help="comma-separated executors (default thread,local)")
    p.add_argument("--out", default=str(ROOT / "bench" / "results_responsiveness.md"))
    args = p.parse_args(argv)
    lines = [cpu_line(), "", "| design | while | endpoint | calls | p50 ms | p95 ms | max ms |",
             "|---|---|---|---|---|---|---|"]
    for design in args.designs.split(","):
        for when, lat in measure(design.strip(), args.calls).items():
            lines += [_row(design, when, name, xs) for name, xs in lat.items()]
        print("\n".join(lines[-4:]), flush=True)
    text = "\n".join(lines) + "\n"
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
