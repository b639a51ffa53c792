"""Image uploads on real images: zip bombs refused before extraction, 16-bit images scaled, split folders, and the
app preview extracting once."""
import importlib.util
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from peft_core.data import prepare_data
from peft_core.errors import DataError
from test_images import MNIST, mnist_images, write_zip

ROOT = Path(__file__).resolve().parents[1]


def _bomb(path: Path, entries: dict[str, bytes], name: str, head: bytes, megabytes: int) -> Path:
    """A zip with ``entries`` plus ``name``: ``head`` followed by ``megabytes`` MB of zeros, deflated (< 1 MB)."""
    write_zip(path, entries)
    with zipfile.ZipFile(path, "a", zipfile.ZIP_DEFLATED) as z, z.open(name, "w") as f:
        f.write(head)
        for _ in range(megabytes):
            f.write(bytes(1_000_000))
    return path


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


@pytest.mark.parametrize("head, megabytes, message", [
    (b"", 400, r"b/huge\.png expands to 400 MB, more than an image of at most 40,000,000 pixels "
               r"\(PEFT_MAX_IMAGE_PIXELS\) can need \(324 MB"),
    ("png", 300, r"b/huge\.png expands to 300 MB, but its header says it is a 28x28 PNG image \(mode L\), which "
                 r"needs at most 4(\.\d+)? MB; the archive is refused"),
])
def test_zip_bomb_under_the_total_budget_is_refused_before_it_is_written(tmp_path, monkeypatch, head, megabytes,
                                                                           message):
    for var in ("PEFT_MAX_IMAGE_PIXELS", "PEFT_MAX_UNZIPPED_MB"):
        monkeypatch.delenv(var, raising=False)
    imgs = mnist_images(10)  # enough real images to train on, were the bomb let through
    png = imgs["1"][0]
    entries = {f"{c}/{i}.png": p for c in ("a", "b") for i, p in enumerate(imgs["1" if c == "a" else "2"])}
    bomb = _bomb(tmp_path / "bomb.zip", entries, "b/huge.png", png if head == "png" else head, megabytes)
    assert bomb.stat().st_size < 1_500_000
    dest = tmp_path / "x"
    with pytest.raises(DataError, match=message):
        prepare_data(bomb, extract_dir=dest)
    assert _size(dest) < 1_000_000  # measured: nothing of the bomb was written, and what was written is removed


def test_default_unzipped_budget_fits_a_shared_space():
    from peft_core.limits import Limits

    assert Limits.from_env({}).max_unzipped_mb == 500


def _gradient16(path: Path) -> np.ndarray:
    """A real 16-bit grayscale PNG whose values (256..65535) all lie above the 8-bit range."""
    values = np.linspace(256, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    Image.fromarray(values).save(path)
    assert Image.open(path).mode == "I;16"
    return values


def test_16_bit_images_keep_their_levels_in_training_and_in_the_bundle(tmp_path):
    from peft_core.images import ImagePreprocessor, load_rgb

    values = _gradient16(tmp_path / "g16.png")
    rgb = np.asarray(load_rgb(tmp_path / "g16.png"))
    assert len(np.unique(rgb)) > 250  # not binarised (Pillow's convert would make every pixel 255)
    assert np.array_equal(rgb[..., 0], values >> 8) and np.array_equal(rgb[..., 0], rgb[..., 2])

    spec = importlib.util.spec_from_file_location("bundle_predict", ROOT / "exporters/templates/predict_image.py")
    bundle = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bundle)
    assert np.array_equal(np.asarray(bundle.load_rgb(tmp_path / "g16.png")), rgb)
    pre = ImagePreprocessor(size=(32, 32))
    clf = object.__new__(bundle.Classifier)  # preprocessing only: no model.onnx needed
    cfg = pre.to_dict()
    clf.size, clf.resample = (cfg["size"]["height"], cfg["size"]["width"]), cfg["resample"]
    clf.mean, clf.std = np.asarray(cfg["image_mean"], np.float32), np.asarray(cfg["image_std"], np.float32)
    assert np.array_equal(clf.pixels(tmp_path / "g16.png"), pre.pixels(tmp_path / "g16.png"))


def _split_zip(path: Path, folders: dict[str, int]) -> Path:
    """Real digits 0-2 under split folders: {folder: images per class}."""
    imgs = mnist_images(sum(folders.values()))
    entries, start = {}, 0
    for folder, n in folders.items():
        entries |= {f"digits/{folder}/{c}/{i}.png": imgs[c][start + i] for c in "012" for i in range(n)}
        start += n
    return write_zip(path, entries)


def test_train_val_test_folders_are_the_three_splits(tmp_path):
    data = prepare_data(_split_zip(tmp_path / "s.zip", {"train": 8, "val": 2, "test": 3}), extract_dir=tmp_path / "x")
    assert data.report.split_sizes == {"train": 24, "validation": 6, "test": 9}
    assert "Splits: `train/` → train, `val/` → validation, `test/` → test." in data.report.to_markdown()


def test_validation_folder_without_test_folder_is_the_test_split_and_the_report_says_so(tmp_path):
    zipped = _split_zip(tmp_path / "s.zip", {"train": 10, "Validation": 3})
    data = prepare_data(zipped, extract_dir=tmp_path / "x")
    assert data.report.split_sizes["test"] == 9 and sum(data.report.split_sizes.values()) == 39
    assert ("Splits: `train/` → train (validation carved out of it, stratified), `Validation/` → test (there "
            "is no test/ folder, so it is the held-out test split).") in data.report.to_markdown()
    test_zip = write_zip(tmp_path / "extra.zip", {f"{c}/{i}.png": p for c in "012"
                                                   for i, p in enumerate(mnist_images(16)[c][13:])})
    data = prepare_data(zipped, test_zip, extract_dir=tmp_path / "y")  # a test zip: Validation/ validates
    assert data.report.split_sizes == {"train": 30, "validation": 9, "test": 9}
    assert data.report.files == {"s.zip": 39, "extra.zip": 9}
    assert "`Validation/` → validation, `extra.zip` → test" in data.report.to_markdown()


def test_app_image_preview_extracts_each_image_once(monkeypatch):
    import app
    import peft_core.image_data as image_data

    calls = []
    real = image_data.load_rgb
    monkeypatch.setattr(image_data, "load_rgb", lambda p: calls.append(p) or real(p))
    table, gallery, data = app._image_preview(str(MNIST), None)
    assert len(calls) == 300 == data.report.rows_read  # each image written and checked once
    assert set(table["split"]) <= {"train", "validation", "test"} and len(gallery) == 16
