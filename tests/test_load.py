"""Load: 4 users at once through gradio_client against the real app, launched in-process as in test_app.py, with
``PEFT_MAX_CONCURRENT_RUNS=2`` so two runs train while the others queue. Each user trains the linear probe on the
same 200 real SMS rows, follows its run with /status and lists its runs with /runs; the server's memory is
sampled throughout."""
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import psutil
import pytest
from conftest import free_port, sms_subset
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from test_app import HP

USERS = 4
CONCURRENT_RUNS = 2
# The server is this process (app.launch in-process, as in test_app.py), so its memory is this process's RSS,
# sampled every 20 ms while the 4 users run. Measured here (2 cores, CPU torch, 200 rows, max_length 64):
#   test_load.py alone (fresh process): RSS 468 MiB before the users, peak 1286-1290 MiB (+817 to +821 MiB)
#   after test_jobs.py in the same process:  RSS 867 MiB before the users, peak 1472 MiB (+605 MiB)
# What grows: 2 runs at once each hold a MiniLM (22.7 M parameters = 91 MB in float32, plus a transient copy
# while it is saved) and its tokenizer; the job manager keeps the last 2 trained runs loaded for /predict; a
# fresh process also loads transformers' model code, sklearn, matplotlib, safetensors for the first time (the
# +200 MiB the fresh process shows over the warm one). The growth bound is 1.5 x the largest growth measured: it
# fails if runs stop being released or a 3rd run trains at once (another ~300 MiB each), not on allocator noise.
# The peak bound is a ceiling for any test order: a quarter of a free CPU Space's 16 GB of RAM.
PEAK_RSS_GROWTH_BOUND_MIB = 1250
PEAK_RSS_BOUND_MIB = 4096


class RssSampler(threading.Thread):
    """Samples this process's resident set size (the app runs in it) every 20 ms until ``stop()``."""

    def __init__(self):
        super().__init__(daemon=True)
        self.proc = psutil.Process()
        self.start_rss = self.peak_rss = self.proc.memory_info().rss
        self._stop_event = threading.Event()

    def run(self):
        while not self._stop_event.wait(0.02):
            self.peak_rss = max(self.peak_rss, self.proc.memory_info().rss)

    def stop(self):
        self._stop_event.set()
        self.join()
        self.peak_rss = max(self.peak_rss, self.proc.memory_info().rss)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The app on a free port, runs under a fresh folder, 2 runs training at once (read by the job manager
    that ``app.launch`` creates for the new RUNS_ROOT)."""
    import app
    import app_state

    mp = pytest.MonkeyPatch()
    mp.setenv("PEFT_MAX_CONCURRENT_RUNS", str(CONCURRENT_RUNS))
    app_state.RUNS_ROOT = tmp_path_factory.mktemp("load_runs")
    app.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port(), quiet=True,
               allowed_paths=[str(app_state.RUNS_ROOT)])
    assert app.jobs().max_concurrent == CONCURRENT_RUNS and app.jobs().root == app_state.RUNS_ROOT
    yield app.demo.local_url
    app.demo.close()
    app.jobs().shutdown()
    mp.undo()


@pytest.fixture(scope="module")
def sms_200(tmp_path_factory):
    path = tmp_path_factory.mktemp("load_data") / "sms_200.csv"
    sms_subset(200).to_csv(path, index=False)
    return path


def one_user(url, csv, timeout_s=150):
    """A user's session: own client and owner, train (test_app's hyper-parameters: 30 epochs, seed 42), poll
    /status until done, list /runs."""
    client = Client(url, verbose=False)
    owner = client.predict(api_name="/new_owner")
    run_id, started = client.predict(owner, handle_file(str(csv)), None, "text", "label", "minilm", "head", **HP,
                                     api_name="/train")
    seen = [("queued", None)] if "Queued" in started else []
    deadline = time.monotonic() + timeout_s
    while (st := client.predict(owner, run_id, api_name="/status"))["state"] not in ("finished", "failed",
                                                                                    "cancelled"):
        seen.append((st["state"], st["queue_position"]))
        assert time.monotonic() < deadline, f"run {run_id} still {st['state']} after {timeout_s} s"
        time.sleep(0.5)
    return {"owner": owner, "run_id": run_id, "status": st, "seen": seen,
            "runs": client.predict(owner, api_name="/runs")}


def test_four_users_train_at_once_with_two_runs_at_a_time(server, sms_200):
    rss = RssSampler()
    rss.start()
    t0 = time.monotonic()
    try:
        with ThreadPoolExecutor(USERS) as pool:
            users = list(pool.map(lambda _: one_user(server, sms_200), range(USERS)))
    finally:
        rss.stop()
    wall_s = time.monotonic() - t0
    growth_mib = (rss.peak_rss - rss.start_rss) / 2**20
    print(f"\n{USERS} users, {CONCURRENT_RUNS} runs at a time: {wall_s:.1f} s; server RSS {rss.start_rss / 2**20:.0f} "
          f"MiB before, peak {rss.peak_rss / 2**20:.0f} MiB (+{growth_mib:.0f} MiB)")
    print("accuracy / baseline:", [(u["status"]["results"].get("accuracy"),
                                    u["status"]["results"].get("baseline_accuracy")) for u in users])

    assert len({u["owner"] for u in users}) == USERS and len({u["run_id"] for u in users}) == USERS
    for u in users:
        st = u["status"]
        assert st["state"] == "finished" and st["error"] is None, (st["state"], st["error"], st["log"][-3:])
        res = st["results"]
        assert res["accuracy"] > res["baseline_accuracy"] > 0.5, res  # held-out split, 40 rows, ~5 spam
        assert [r["id"] for r in u["runs"]] == [u["run_id"]]  # each user sees its own run and nothing else
    client = Client(server, verbose=False)
    for u, other in zip(users, users[1:] + users[:1]):
        with pytest.raises(AppError, match="no run"):
            client.predict(u["owner"], other["run_id"], api_name="/status")
    # never more than 2 trained at once (server times of every run), and the queue was used
    spans = [(r["started"], r["finished"]) for u in users for r in u["runs"]]
    overlap = max(sum(s <= start < f for s, f in spans) for start, _ in spans)
    assert overlap == CONCURRENT_RUNS, spans
    waited = [pos for u in users for state, pos in u["seen"] if state == "queued"]
    assert waited and any(pos for pos in waited), [u["seen"] for u in users]
    assert growth_mib < PEAK_RSS_GROWTH_BOUND_MIB and rss.peak_rss / 2**20 < PEAK_RSS_BOUND_MIB
