"""Shared fixtures: offline settings, real data subsets, and one trained run reused by export/bundle tests."""
import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path  # noqa: E402

import pandas as pd  # noqa: E402
import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SMS = ROOT / "examples" / "sms_spam.csv"


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (Gradio 6 does not accept server_port=0: it then probes port 0 and fails)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sms_subset(n: int, seed: int = 0) -> pd.DataFrame:
    """A stratified sample of n rows of the real SMS Spam Collection (class shares kept)."""
    from sklearn.model_selection import train_test_split

    df = pd.read_csv(SMS)
    return train_test_split(df, train_size=n, stratify=df["label"], random_state=seed)[0].reset_index(drop=True)


@pytest.fixture(scope="session")
def sms_small(tmp_path_factory) -> Path:
    """400 real SMS rows (≈54 spam) as CSV."""
    path = tmp_path_factory.mktemp("data") / "sms_small.csv"
    sms_subset(400).to_csv(path, index=False)
    return path


@pytest.fixture(scope="session")
def head_run(sms_small, tmp_path_factory):
    """One linear-probe run on the small SMS sample (max_length 64), trained once for the whole session."""
    from peft_core.pipeline import RunConfig, fine_tune
    from peft_core.training import TrainConfig

    cfg = RunConfig(train_file=str(sms_small), method="head", train=TrainConfig(max_length=64))
    return fine_tune(cfg, tmp_path_factory.mktemp("head_run"))


@pytest.fixture(scope="session")
def head_export(head_run):
    from exporters.run_export import export_run

    return export_run(head_run, parity_rows=34)


BLOCKED = ("torch", "transformers", "peft", "datasets", "pandas", "sklearn")


def run_without_ml_stack(script: Path, argv: list[str], cwd: Path, also_blocked: tuple = (), timeout: int = 180):
    """Run ``script`` (a bundle's predict.py) as __main__ in a fresh interpreter where importing any of
    BLOCKED (+ ``also_blocked``) raises ImportError, as on a machine with only the bundle's requirements."""
    import subprocess
    import sys

    blocked = BLOCKED + tuple(also_blocked)
    code = ("import sys, runpy\n"
            "class _Block:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            f"        if name.split('.')[0] in {blocked!r}:\n"
            "            raise ImportError(f'{name} is not allowed in the bundle')\n"
            "sys.meta_path.insert(0, _Block())\n"
            f"sys.argv = [{str(script)!r}, *{list(argv)!r}]\n"
            f"runpy.run_path({str(script)!r}, run_name='__main__')\n")
    return subprocess.run([sys.executable, "-c", code], check=True, cwd=cwd, timeout=timeout)
