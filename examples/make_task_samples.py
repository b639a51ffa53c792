"""Rebuild the task-kind samples in this folder from the project's shared data (not needed to use them).

Rule for every table: ``frame.sample(n=N, random_state=0).sort_index()`` (a seeded random subset, kept in the
source's row order), columns and cells unchanged. ``mnist_tags.zip``: the 300 digits of ``mnist_digits.zip`` with a
metadata.csv whose targets are derived from each image's real label (see README.md).

    python examples/make_task_samples.py ../shared/data
"""
import io
import sys
import zipfile
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
SAMPLES = {  # output: (source file under the shared data folder, rows)
    "goemotions_sample.csv": ("goemotions/train.csv", 1500),
    "goemotions_test_sample.csv": ("goemotions/test.csv", 400),
    "emobank_sample.csv": ("emobank/train.csv", 1200),
    "snli_sample.csv": ("snli_devtest/train.csv", 1200),
    "stsb_sample.csv": ("stsb_ccbysa_subset/train.csv", 800),
}


def tags(digit: int) -> str:
    """The tags of a digit: even, prime, greater_than_4 (none for 1), sorted, ;-joined."""
    found = {"even": digit % 2 == 0, "prime": digit in (2, 3, 5, 7), "greater_than_4": digit > 4}
    return ";".join(sorted(t for t, on in found.items() if on))


def mnist_tags(src: Path, out: Path) -> None:
    rows, files = [], {}
    with zipfile.ZipFile(src) as z:
        for name in sorted(z.namelist()):
            if name.endswith(".png"):
                _, digit, file = name.split("/")
                files[f"images/{file}"] = z.read(name)
                rows.append({"file_name": f"images/{file}", "tags": tags(int(digit)), "digit": int(digit)})
    meta = io.StringIO()
    pd.DataFrame(rows).to_csv(meta, index=False)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("mnist_tags/metadata.csv", meta.getvalue())
        for name, data in files.items():
            z.writestr(f"mnist_tags/{name}", data)


def main(shared: Path) -> None:
    for out, (src, n) in SAMPLES.items():
        df = pd.read_csv(shared / src, dtype=str, keep_default_na=False)
        df.sample(n=n, random_state=0).sort_index().to_csv(HERE / out, index=False)
    mnist_tags(HERE / "mnist_digits.zip", HERE / "mnist_tags.zip")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else HERE.parent.parent / "shared" / "data"))
