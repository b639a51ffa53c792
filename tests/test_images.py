"""Image classification on real images: zip loading and its refusals, EfficientNet-Lite0 wrapper, the three methods,
the frozen-prefix cache, ONNX export + parity, and the bundle's predict.py with only onnxruntime, numpy, Pillow."""
import csv
import io
import json
import os
import stat
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import run_without_ml_stack
from test_ecosystem import triton_matches_graph
from peft_core.data import prepare_data
from peft_core.errors import DataError
from peft_core.limits import Limits

ROOT = Path(__file__).resolve().parents[1]
MNIST = ROOT / "examples" / "mnist_digits.zip"
CIFAR = ROOT.parent / "shared" / "data" / "cifar10_mini" / "cifar10_test_mini_50pc.zip"
def mnist_images(per_class: int) -> dict[str, list[bytes]]:
    """PNG bytes of the first ``per_class`` committed MNIST digits of each class."""
    out: dict[str, list[bytes]] = {}
    with zipfile.ZipFile(MNIST) as z:
        for name in sorted(z.namelist()):
            parts = name.split("/")
            if name.endswith(".png") and len(out.setdefault(parts[1], [])) < per_class:
                out[parts[1]].append(z.read(name))
    return out


def write_zip(path: Path, entries: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name, data in entries.items():
            z.writestr(name, data)
    return path


def digits_zip(path: Path, per_class: int, prefix: str = "") -> Path:
    return write_zip(path, {f"{prefix}{label}/{i}.png": png for label, pngs in mnist_images(per_class).items()
                            for i, png in enumerate(pngs)})


@pytest.fixture(scope="module")
def small_zip(tmp_path_factory) -> Path:
    """100 real MNIST digits, 10 per class."""
    return digits_zip(tmp_path_factory.mktemp("img") / "digits100.zip", 10)


# ---------------------------------------------------------------- data: layouts, reports, refusals


def test_image_folder_zip_is_split_stratified_and_reported(tmp_path):
    data = prepare_data(MNIST, extract_dir=tmp_path / "x")
    assert data.task.kind == "single_label" and data.task.modality == "image" and data.task.labels == [str(d) for d in range(10)]
    assert data.report.split_sizes == {"train": 210, "validation": 30, "test": 60}
    assert all(c == {"train": 21, "validation": 3, "test": 6} for c in data.report.class_counts.values())
    assert "**300** images read" in data.report.to_markdown()
    assert any("held-out test split has only 60 rows: each row is 1.7 % of the test scores" in w
               for w in data.report.warnings)
    first = data.splits["train"]["image"][0]
    assert Path(first).is_file() and Path(first).resolve().is_relative_to((tmp_path / "x").resolve())


def test_train_and_validation_folders_are_used_as_given(tmp_path):
    imgs = mnist_images(12)
    entries = {f"digits/train/{c}/{i}.png": p for c, ps in imgs.items() for i, p in enumerate(ps[:10])}
    entries |= {f"digits/validation/{c}/{i}.png": p for c, ps in imgs.items() for i, p in enumerate(ps[10:])}
    data = prepare_data(write_zip(tmp_path / "split.zip", entries), extract_dir=tmp_path / "x")
    assert data.report.split_sizes["test"] == 20  # the validation/ folder is the held-out split
    assert data.report.split_sizes["train"] + data.report.split_sizes["validation"] == 100


def test_junk_non_images_and_corrupt_images_are_named_and_skipped(tmp_path):
    imgs = mnist_images(10)
    entries = {f"{c}/{i}.png": p for c, ps in imgs.items() for i, p in enumerate(ps)}
    entries |= {"3/notes.txt": b"hello", "__MACOSX/3/._0.png": b"junk", ".DS_Store": b"x",
                "4/broken.png": imgs["4"][0][:60], "5/fake.jpg": b"<html>not an image</html>"}
    data = prepare_data(write_zip(tmp_path / "mixed.zip", entries), extract_dir=tmp_path / "x")
    text = " ".join(data.report.warnings)
    assert "3/notes.txt" in text and "4/broken.png" in text and "5/fake.jpg" in text
    assert data.report.dropped_rows == {"not an image file": 1, "unreadable image": 2}
    assert "system files ignored" in text
    assert sum(data.report.split_sizes.values()) == 100


def test_grayscale_and_rgba_become_rgb(tmp_path):
    from peft_core.images import ImagePreprocessor, load_rgb

    gray = Image.open(io.BytesIO(mnist_images(1)["7"][0]))
    assert gray.mode == "L" and load_rgb(gray).mode == "RGB"
    rgba = Image.new("RGBA", (8, 8), (255, 0, 0, 0))  # fully transparent red -> white background
    assert load_rgb(rgba).getpixel((0, 0)) == (255, 255, 255)
    px = ImagePreprocessor()([gray, rgba])["pixel_values"]
    assert px.shape == (2, 3, 224, 224) and px.dtype == torch.float32


def _refused(tmp_path, zip_path: Path, match: str, **limits):
    dest = tmp_path / "extract"
    before = set(tmp_path.rglob("*"))
    with pytest.raises(DataError, match=match):
        prepare_data(zip_path, extract_dir=dest, limits=Limits(**limits) if limits else None)
    written = set(tmp_path.rglob("*")) - before
    assert all(p.resolve().is_relative_to(dest.resolve()) for p in written), written
    return written


def test_zip_slip_absolute_paths_and_symlinks_refuse_the_archive(tmp_path):
    png = mnist_images(1)["1"][0]
    ok = {f"{c}/a.png": png for c in "ab"}
    for bad, match in (("../evil.png", "outside the archive"), ("/abs/evil.png", "absolute path"),
                       ("C:/evil.png", "absolute path")):
        written = _refused(tmp_path, write_zip(tmp_path / "bad.zip", ok | {bad: png}), match)
        assert not written  # checked before anything is extracted
    link = zipfile.ZipInfo("a/link.png")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    with zipfile.ZipFile(tmp_path / "link.zip", "w") as z:
        for name, data in ok.items():
            z.writestr(name, data)
        z.writestr(link, "/etc/passwd")
    assert not _refused(tmp_path, tmp_path / "link.zip", "symbolic link")
    assert not (tmp_path.parent / "evil.png").exists()


def test_zip_bomb_is_stopped_before_expansion(tmp_path):
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("a/1.png", mnist_images(1)["1"][0])
        z.writestr("b/huge.png", b"\0" * 30_000_000)  # 30 MB of zeros, a few KB compressed
    assert bomb.stat().st_size < 100_000
    assert not _refused(tmp_path, bomb, "expands to .* MB of images; the limit is 5 MB", max_unzipped_mb=5)
    assert not _refused(tmp_path, bomb, "holds 2 images; the limit is 1", max_images=1)


def test_decompression_bomb_image_is_skipped_by_name(tmp_path, monkeypatch):
    monkeypatch.setenv("PEFT_MAX_IMAGE_PIXELS", "1000000")
    big = io.BytesIO()
    Image.new("L", (3000, 3000)).save(big, format="PNG")  # 9 Mpx, compresses to a few KB
    imgs = mnist_images(10)
    entries = {f"{c}/{i}.png": p for c in ("1", "2") for i, p in enumerate(imgs[c])} | {"2/bomb.png": big.getvalue()}
    data = prepare_data(write_zip(tmp_path / "b.zip", entries), extract_dir=tmp_path / "x")
    assert any("2/bomb.png" in w and ("decompression-bomb" in w or "over the limit" in w)
               for w in data.report.warnings), data.report.warnings
    assert sum(data.report.split_sizes.values()) == 20


@pytest.mark.parametrize("kind, match", [
    ("html", "not a readable zip archive"), ("truncated", "not a readable zip archive"),
    ("flat", "inside one folder per class"), ("no_images", "contains no image files"),
    ("one_class", "at least 2"), ("empty", "is empty")])
def test_bad_archives_get_specific_messages(tmp_path, kind, match):
    png = mnist_images(1)["1"][0]
    path = tmp_path / f"{kind}.zip"
    if kind == "html":
        path.write_bytes(b"<!doctype html><html><body>login</body></html>")
    elif kind == "truncated":
        digits_zip(path, 3)
        path.write_bytes(path.read_bytes()[:2000])
    elif kind == "flat":
        write_zip(path, {"1.png": png, "2.png": png})
    elif kind == "no_images":
        write_zip(path, {"a/readme.txt": b"x", "b/data.csv": b"y"})
    elif kind == "one_class":
        write_zip(path, {f"only/{i}.png": png for i in range(5)})
    else:
        path.write_bytes(b"")
    _refused(tmp_path, path, match)


# ---------------------------------------------------------------- model wrapper


def test_bundled_efficientnet_saves_and_loads_like_a_transformers_model(tmp_path):
    from transformers import AutoModel

    from peft_core.efficientnet_lite import load_lite0_backbone

    model = load_lite0_backbone()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        ref = model(x)
        assert ref.pooler_output.shape == (2, 1280)
        for k in (0, 7, 15):  # resuming from any block gives the same output (what the prefix cache relies on)
            torch.testing.assert_close(model.forward_from(model.forward_blocks(x, k), k).pooler_output,
                                       ref.pooler_output)
    model.save_pretrained(tmp_path / "m")
    assert (tmp_path / "m" / "model.safetensors").is_file()
    assert json.loads((tmp_path / "m" / "config.json").read_text())["model_type"] == "efficientnet_lite"
    again = AutoModel.from_pretrained(tmp_path / "m")
    with torch.no_grad():
        torch.testing.assert_close(again(x).pooler_output, ref.pooler_output)


# ---------------------------------------------------------------- training, evaluation, export


@pytest.fixture(scope="module")
def image_head_run(tmp_path_factory):
    from peft_core.pipeline import RunConfig, fine_tune

    return fine_tune(RunConfig(train_file=str(MNIST), method="head"), tmp_path_factory.mktemp("img_head"))


def test_head_on_mnist_beats_the_majority_baseline(image_head_run):
    ev = image_head_run.eval_report
    assert image_head_run.spec.key == "efficientnet-lite0" and image_head_run.train_result.cache == "pooled features"
    assert ev.accuracy > ev.baseline_accuracy + 0.5, (ev.accuracy, ev.baseline_accuracy)
    assert (image_head_run.run_dir / "misclassified.png").is_file()
    assert Image.open(image_head_run.run_dir / "misclassified.png").size[0] > 500


def test_image_export_parity_and_bundle_predict_without_torch(image_head_run, tmp_path):
    from exporters.bundle import extract_bundle
    from peft_core.data import split_inputs
    from peft_core.inference import predict_logits
    from exporters.run_export import export_run

    res = export_run(image_head_run, parity_rows=20)
    assert res.parity.passed and res.parity.max_abs_diff <= 1e-4, res.parity.summary()
    assert {c.batch_size for c in res.parity.checks} == {1, 2, 17}
    # CNN: static int8 (Conv), bundled when it passes the gate (tests/test_static_int8.py); dynamic is not tried
    assert ("int8" in res.bundles) if res.int8 is not None else "static int8 was tried" in res.message
    names = set(zipfile.ZipFile(res.bundles["fp32"]).namelist())
    assert {"onnx/model.onnx", "preprocessor_config.json", "config.json", "triton-config/config.pbtxt", "predict.py",
            "README.md"} <= names
    assert "tokenizer.json" not in names
    folder = extract_bundle(res.bundles["fp32"], tmp_path / "bundle")
    cfg = json.loads((folder / "config.json").read_text())["peft_onnx_bundle"]
    assert cfg["modality"] == "image" and cfg["preprocessing"]["size"] == {"height": 224, "width": 224}
    _loads_in_transformers(folder, image_head_run.data.task.labels)
    triton_matches_graph(folder)
    run_without_ml_stack(folder / "predict.py", ["--triton-repository", str(tmp_path / "models")], tmp_path,
                         also_blocked=("tokenizers",))
    assert (tmp_path / "models" / "classifier" / "1" / "model.onnx").stat().st_size == (
        folder / "onnx" / "model.onnx").stat().st_size

    test = image_head_run.data.splits["test"]
    images = split_inputs(test)
    images_dir = tmp_path / "imgs"
    images_dir.mkdir()
    for i, p in enumerate(images):
        (images_dir / f"{i:03d}.png").write_bytes(Path(p).read_bytes())
    run_without_ml_stack(folder / "predict.py", [str(images_dir), "--output", str(tmp_path / "out.csv")], tmp_path,
                         also_blocked=("tokenizers",))
    rows = list(csv.DictReader(open(tmp_path / "out.csv", encoding="utf-8")))
    labels = image_head_run.data.task.labels
    torch_labels = [labels[i] for i in predict_logits(image_head_run.model, image_head_run.tokenizer, images,
                                                      0).argmax(-1)]
    assert [r["label"] for r in rows] == torch_labels and len(rows) == len(images)


def _loads_in_transformers(folder: Path, labels: list[str]) -> None:
    """The image bundle's config.json loads with AutoConfig (labels, problem_type, a classifier type transformers
    knows) and its preprocessor_config.json with AutoImageProcessor, which gives the training pixels."""
    from transformers import AutoConfig, AutoImageProcessor

    from peft_core.images import ImagePreprocessor

    config = AutoConfig.from_pretrained(folder)
    assert [config.id2label[i] for i in range(len(labels))] == labels and config.label2id[labels[1]] == 1
    assert config.problem_type == "single_label_classification"
    assert config.model_type == "efficientnet" and config.architectures == ["EfficientNetForImageClassification"]
    assert config.peft_onnx_bundle["base_config"]["model_type"] == "efficientnet_lite"  # the true network
    processor = AutoImageProcessor.from_pretrained(folder)
    assert type(processor).__name__.startswith("ViTImageProcessor")
    digit = Image.open(io.BytesIO(mnist_images(1)["7"][0])).convert("RGB")
    ours = ImagePreprocessor.from_config(config.peft_onnx_bundle["preprocessing"]).pixels(digit)
    np.testing.assert_allclose(processor(digit, return_tensors="np")["pixel_values"][0], ours, atol=1e-6)


def test_last_n_cache_gives_the_same_model_as_recomputing(small_zip, tmp_path):
    from peft_core.pipeline import RunConfig, fine_tune
    from peft_core.training import TrainConfig

    runs = {}
    for cache in (True, False):
        cfg = RunConfig(train_file=str(small_zip), method="last_n", method_config={"num_layers": 1},
                        train=TrainConfig(epochs=1, batch_size=16, feature_cache=cache, precision="fp32"))
        runs[cache] = fine_tune(cfg, tmp_path / f"cache_{cache}")  # fp32: an exactness claim (see test_training)
    assert runs[True].train_result.cache == "frozen-prefix feature maps"
    assert runs[False].train_result.cache == "none"
    np.testing.assert_allclose(runs[True].train_result.step_losses, runs[False].train_result.step_losses,
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(runs[True].test_logits, runs[False].test_logits, atol=1e-3)


def test_lora_on_conv_layers_trains_and_merges(small_zip, tmp_path):
    from peft_core.pipeline import RunConfig, fine_tune
    from peft_core.training import TrainConfig

    cfg = RunConfig(train_file=str(small_zip), method="lora", method_config={"r": 4},
                    train=TrainConfig(epochs=1, batch_size=16, probe_epochs=5))
    run = fine_tune(cfg, tmp_path / "lora")
    assert run.train_result.probe["epochs"] >= 1 and len(run.train_result.history) == 1
    assert not hasattr(run.model, "peft_config")  # merged: a plain ImageClassifier
    assert run.eval_report.accuracy > run.eval_report.baseline_accuracy
    assert (run.run_dir / "adapter" / "adapter_config.json").is_file()


@pytest.mark.skipif(not CIFAR.is_file(), reason="CIFAR-10 mini is only in the project's shared data folder")
def test_head_on_cifar10_mini_beats_the_majority_baseline(tmp_path):
    from peft_core.pipeline import RunConfig, fine_tune

    run = fine_tune(RunConfig(train_file=str(CIFAR), method="head"), tmp_path / "cifar")
    assert run.data.task.num_labels == 10 and run.data.report.split_sizes["test"] == 100
    assert run.eval_report.accuracy > run.eval_report.baseline_accuracy + 0.3, run.eval_report.accuracy


def test_text_model_on_images_is_refused(small_zip, tmp_path):
    from peft_core.errors import ConfigError
    from peft_core.pipeline import RunConfig, fine_tune

    with pytest.raises(ConfigError, match="text model but the data are images"):
        fine_tune(RunConfig(train_file=str(small_zip), model="minilm"), tmp_path / "x")
    assert not (tmp_path / "x" / "model").exists()
    assert os.environ.get("HF_HUB_OFFLINE") == "1"


@pytest.mark.parametrize("arch", ["vit", "resnet"])
def test_any_local_transformers_image_model_folder_works(arch, small_zip, tmp_path):
    """A ViT (class-token pooling) and a ResNet (pooler output, stages as layers) saved as ordinary transformers
    folders: loaded, trained (head and last_n), exported with parity. Tiny random weights: the point is the plumbing."""
    from transformers import ResNetConfig, ResNetModel, ViTConfig, ViTModel

    from exporters.run_export import export_run
    from peft_core.pipeline import RunConfig, fine_tune
    from peft_core.training import TrainConfig

    torch.manual_seed(0)
    if arch == "vit":
        model = ViTModel(ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                                   image_size=64, patch_size=16), add_pooling_layer=False)
    else:
        model = ResNetModel(ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1]))
    folder = tmp_path / arch
    model.save_pretrained(folder)
    (folder / "preprocessor_config.json").write_text(json.dumps(
        {"image_processor_type": "ViTImageProcessor", "size": {"height": 64, "width": 64}, "resample": 2,
         "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "do_normalize": True}))
    for method in ("head", "last_n"):
        cfg = RunConfig(train_file=str(small_zip), model=str(folder), method=method,
                        method_config={"num_layers": 1} if method == "last_n" else {},
                        train=TrainConfig(epochs=2, probe_epochs=0))
        run = fine_tune(cfg, tmp_path / f"{arch}_{method}")
        assert run.spec.modality == "image" and run.spec.pooling == ("cls" if arch == "vit" else "pooler")
        assert run.tokenizer.size == (64, 64) and len(run.train_result.history) >= 1
    res = export_run(run, parity_rows=8)
    assert res.parity.passed, res.parity.summary()
