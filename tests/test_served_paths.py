"""What the running app serves, and what it leaves on its console: ``python app.py`` in a subprocess (as an
operator starts it), a real run trained and exported through the API.

- no file of the runs folder or the state folder comes back from Gradio's file routes; bundles and config.json
  only through signed, owner-issued, expiring links; the key file left in the runs folder by older versions is
  moved out of it;
- Gradio's temp folder stays bounded: exports add no copies of the bundles, uploads are cleaned on schedule;
- the console keeps the URL and loses the noise (Pandas4Warning, weight-loading bars, ONNX INFO lines).
"""
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import httpx
import pytest
from conftest import ROOT, free_port, sms_subset
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from test_app import HP, wait_until_done

LEGACY_SECRET = "legacy-key-left-in-the-runs-folder-by-an-older-version"
CACHE_MAX_AGE_S = 20  # the server's PEFT_CACHE_MAX_AGE_S here (cleaned every second)


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def wait_for(condition, timeout_s: float, what: str, poll_s: float = 0.2):
    deadline = time.monotonic() + timeout_s
    while not (value := condition()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(poll_s)
    return value


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("served")
    runs, temp = base / "runs", base / "gradio_tmp"
    runs.mkdir()
    (runs / ".browser_secret").write_text(LEGACY_SECRET)  # where versions before this one kept it
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("PEFT_BROWSER_SECRET", "PEFT_STATE_DIR")}
    env |= {"PEFT_RUNS_DIR": str(runs), "GRADIO_TEMP_DIR": str(temp), "GRADIO_SERVER_PORT": str(port),
            "PEFT_CACHE_CLEAN_EVERY_S": "1", "PEFT_CACHE_MAX_AGE_S": str(CACHE_MAX_AGE_S), "HF_HUB_OFFLINE": "1",
            "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1"}
    out, err = (base / "stdout.txt").open("w"), (base / "stderr.txt").open("w")
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=out, stderr=err)
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: proc.poll() is not None or "Running on local URL" in (base / "stdout.txt").read_text(), 240,
             "the app to start")
    assert proc.poll() is None, (base / "stderr.txt").read_text()[-3000:]
    yield {"url": url, "runs": runs, "temp": temp, "state": base / ".peft_state", "base": base,
           "client": Client(url, verbose=False, download_files=False)}  # /export answers with signed links
    proc.terminate()
    proc.wait(timeout=60)
    out.close(), err.close()


@pytest.fixture(scope="module")
def trained(server, tmp_path_factory):
    """One linear-probe run on 200 real SMS rows, owned by a fresh API owner."""
    csv = tmp_path_factory.mktemp("served_data") / "sms_200.csv"
    sms_subset(200).to_csv(csv, index=False)
    client = server["client"]
    owner = client.predict(api_name="/new_owner")
    hp = HP | {"epochs": 5, "max_length": 32}
    run_id, _ = client.predict(owner, handle_file(str(csv)), None, "text", "label", "minilm", "head", **hp,
                               api_name="/train")
    st = wait_until_done(client, owner, run_id)
    assert st["state"] == "finished", st
    return {"owner": owner, "run_id": run_id}


@pytest.fixture(scope="module")
def exported(server, trained):
    """The first export of the trained run: the API's answer and Gradio's temp folder size around it."""
    before = folder_bytes(server["temp"])
    summary, _parity, bundle = server["client"].predict(trained["owner"], trained["run_id"], api_name="/export")
    return {"summary": summary, "links": [f["url"] if isinstance(f, dict) else f for f in bundle["value"]],
            "temp_growth": folder_bytes(server["temp"]) - before}


def _forge(server, run_id, name, expires):
    """A link signed with the server's own key (read from its state folder, as only the server can)."""
    import app_files

    secret = (server["state"] / "browser_secret").read_text().strip()
    return (f"{server['url']}{app_files.ROUTE}/{run_id}/{name}?exp={int(expires)}"
            f"&sig={app_files.signature(secret, run_id, name, int(expires))}")


def test_nothing_under_the_runs_or_state_folder_is_served_except_through_signed_links(server, trained, exported):
    files = [p for folder in (server["runs"], server["state"]) for p in folder.rglob("*") if p.is_file()]
    run_dir = server["runs"] / trained["run_id"]
    assert {"config.json", "bundle-fp32.zip", "status.json"} <= {p.name for p in files}
    assert any(p.parent == run_dir / "data" for p in files)  # the run's copy of the uploaded CSV
    served = []
    with httpx.Client(timeout=30) as http:
        for path in files:
            for route in ("/gradio_api/file=", "/gradio_api/file/", "/file="):
                r = http.get(f"{server['url']}{route}{path}")
                if r.status_code == 200:
                    served.append(f"{route}{path}")
        assert served == []
        secret = server["state"] / "browser_secret"  # the old key, moved out of the runs folder, private
        assert secret.read_text().strip() == LEGACY_SECRET and not (server["runs"] / ".browser_secret").exists()
        assert secret.stat().st_mode & 0o777 == 0o600 and server["state"].stat().st_mode & 0o777 == 0o700

        # the owner's links (from /export) download the bundles, as attachments, not from Gradio's cache
        assert exported["summary"].startswith("**Ready to download**") and len(exported["links"]) == 2
        for link in exported["links"]:
            assert link.startswith(f"{server['url']}/peft/download/{trained['run_id']}/bundle-")
            r = http.get(link)
            assert r.status_code == 200 and r.headers["content-disposition"].startswith("attachment")
            name = link.split("?")[0].rsplit("/", 1)[1]
            local = server["base"] / name
            local.write_bytes(r.content)
            assert {"onnx/model.onnx", "onnx/model_quantized.onnx"} & set(zipfile.ZipFile(local).namelist())

        link = exported["links"][0]
        other = "0" * 32
        refused = {
            "tampered signature": link[:-4] + ("0000" if not link.endswith("0000") else "1111"),
            "other run id": link.replace(trained["run_id"], other),
            "other file of the run": link.replace(link.split("?")[0].rsplit("/", 1)[1], "config.json"),
            "no signature": link.split("?")[0],
            "expired": _forge(server, trained["run_id"], "config.json", time.time() - 1),
            "dot-dot in the name": link.split("?")[0].rsplit("/", 1)[0] + "/..%2Fstatus.json?" + link.split("?")[1],
            "dot-dot in the path": f"{server['url']}/peft/download/../runs/{trained['run_id']}/config.json",
            "signed but not downloadable": _forge(server, trained["run_id"], "status.json", time.time() + 60),
        }
        codes = {why: http.get(url).status_code for why, url in refused.items()}
        assert all(code in (403, 404) for code in codes.values()), codes
        assert "expired" in http.get(refused["expired"]).text
        # the same forge with a future expiry works: the refusals above are for the reasons named
        r = http.get(_forge(server, trained["run_id"], "config.json", time.time() + 60))
        assert r.status_code == 200 and r.json()["run"]["method"] == "head"

    stranger = server["client"].predict(api_name="/new_owner")
    with pytest.raises(AppError, match="no run"):
        server["client"].predict(stranger, trained["run_id"], api_name="/export")


def test_gradio_temp_folder_stays_bounded_over_uploads_and_exports(server, trained, exported, tmp_path):
    client, temp = server["client"], server["temp"]
    growth = [exported["temp_growth"]]
    for _ in range(2):  # 3 exports of one run in all
        before = folder_bytes(temp)
        summary, _, _ = client.predict(trained["owner"], trained["run_id"], api_name="/export")
        assert summary.startswith("**Ready to download**")
        growth.append(folder_bytes(temp) - before)
    assert sum(growth) < 5e6, growth  # was +409 MB (both bundles copied on every export)

    full = (ROOT / "examples" / "sms_spam.csv").read_text()
    start = folder_bytes(temp)
    for i in range(20):
        csv = tmp_path / f"upload_{i}.csv"
        csv.write_text(full + f"ham,distinct upload number {i}\n")  # 485 KB each, all different
        report = client.predict(handle_file(str(csv)), None, api_name="/load_data")[3]
        assert "rows read" in report
    peak = folder_bytes(temp)
    assert peak - start > 5e6  # the 20 uploads did land in the folder ...
    wait_for(lambda: folder_bytes(temp) - start < 1e6, CACHE_MAX_AGE_S + 60,
             "the cache clean-up to remove the uploads")  # ... and are removed once older than the max age


def test_console_keeps_the_url_and_drops_library_noise(server, trained, exported):
    out = (server["base"] / "stdout.txt").read_text()
    err = (server["base"] / "stderr.txt").read_text()
    assert "Running on local URL" in out
    noise = [line for line in err.splitlines()
             if "Pandas4Warning" in line or "Loading weights" in line or "it/s]" in line
             or ("INFO" in line and ("onnx" in line.lower() or "torch" in line.lower()))]
    assert noise == [], noise[:20]
