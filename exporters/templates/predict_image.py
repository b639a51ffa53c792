"""Predict with this bundle's ONNX image model. Needs only: pip install onnxruntime numpy Pillow

    python predict.py photo1.jpg photo2.png          # the prediction per image
    python predict.py images/ --top-k 3              # every image under a folder (recursively)
    python predict.py images/ --output predictions.csv
    python predict.py --triton-repository models [--triton-name classifier]   # a Triton model repository

What a prediction is depends on the task (config.json "peft_onnx_bundle" > "task", see postprocess.py):
single-label: the label and its confidence (``--top-k``: the k most probable labels; CSV columns path, label,
confidence, label_2, confidence_2...); multi-label: the labels whose probability reaches its threshold and their probabilities (CSV: path, labels, then
p_<label> for every label); regression: the number in the target's units (CSV: path, prediction).

Preprocessing (from config.json "peft_onnx_bundle" > "preprocessing", the same steps as in training): open with
Pillow, apply EXIF rotation, scale 16-bit grayscale to 8 bits (value >> 8), composite transparency on white, convert to RGB,
resize to (height, width) with the given resampling filter, scale to [0, 1], subtract image_mean and divide by
image_std per channel, layout [batch, 3, H, W]. The graph: onnx/model.onnx (config.json "peft_onnx_bundle" >
"model_file"). ``--triton-repository DIR`` writes DIR/NAME/config.pbtxt (triton-config/config.pbtxt, named) and
DIR/NAME/1/model.onnx for Triton Inference Server's ONNX Runtime backend, and exits.
"""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image, ImageOps

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # postprocess.py sits beside this file (also when run with runpy or from elsewhere)
import postprocess  # noqa: E402
from postprocess import safe_cell  # noqa: E402
EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
MAX_PIXELS = 40_000_000  # Pillow's decompression-bomb guard
SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")  # Pillow modes of 16-bit grayscale images


def to_8bit(img: Image.Image) -> Image.Image:
    """16-bit grayscale (modes I;16*, I) -> 8-bit L as value >> 8; Image.convert would clip values above 255."""
    if img.mode not in SIXTEEN_BIT:
        return img
    arr = np.clip(np.asarray(img).astype(np.int64), 0, 65535) >> 8
    return Image.fromarray(arr.astype(np.uint8))


def load_rgb(path: Path) -> Image.Image:
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    img = to_8bit(ImageOps.exif_transpose(Image.open(path)))
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        img = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    return img.convert("RGB")


class Classifier:
    def __init__(self, folder: Path = HERE):
        self.config = postprocess.read_config(folder)  # this project's section of config.json
        pre = self.config["preprocessing"]
        self.size = (int(pre["size"]["height"]), int(pre["size"]["width"]))
        self.resample = int(pre["resample"])
        self.mean = np.asarray(pre["image_mean"], np.float32)
        self.std = np.asarray(pre["image_std"], np.float32)
        self.labels = postprocess.labels(self.config)
        self.post = postprocess.for_config(self.config)
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(folder / postprocess.model_file(self.config)), opts,
                                            providers=["CPUExecutionProvider"])

    def pixels(self, path: Path) -> np.ndarray:
        """float32 [3, H, W]."""
        img = load_rgb(path).resize((self.size[1], self.size[0]), self.resample)
        arr = (np.asarray(img, dtype=np.float32) / 255.0 - self.mean) / self.std
        return arr.transpose(2, 0, 1)

    def logits(self, paths: list[Path], batch_size: int = 32) -> np.ndarray:
        """float32 [n, num_labels]."""
        out = []
        for i in range(0, len(paths), batch_size):
            batch = np.stack([self.pixels(p) for p in paths[i:i + batch_size]])
            out.append(self.session.run(["logits"], {"pixel_values": batch})[0])
        return np.concatenate(out) if out else np.zeros((0, len(self.labels)), np.float32)

    def probabilities(self, paths: list[Path]) -> np.ndarray:
        """Softmax over the logits: float64 [n, num_labels] (single-label models)."""
        return postprocess.softmax(self.logits(paths))


def collect(args: list[str]) -> tuple[list[Path], list[str]]:
    """Image paths from files and folders; problems as messages."""
    paths, problems = [], []
    for a in args:
        p = Path(a)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in EXTENSIONS)
            if not found:
                problems.append(f"{a}: no image files in this folder")
            paths += found
        elif p.is_file():
            paths.append(p)
        else:
            problems.append(f"{a}: no such file or folder")
    return paths, problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("images", nargs="*", help="image files and/or folders")
    ap.add_argument("--top-k", type=int, default=1, help="how many labels to show per image")
    ap.add_argument("--output", help="write a CSV (path, label, confidence, then label_2, confidence_2 ... up to "
                                     "--top-k) instead of printing")
    ap.add_argument("--triton-repository", metavar="DIR",
                    help="write a Triton model repository entry DIR/NAME (config.pbtxt, 1/model.onnx) and exit")
    ap.add_argument("--triton-name", metavar="NAME", default="classifier",
                    help="the model's name (and folder) in --triton-repository (default classifier)")
    args = ap.parse_args(argv)
    if args.triton_repository:
        return postprocess.triton_command(HERE, args.triton_repository, args.triton_name)
    if not args.images:
        ap.error("give image files or folders")
    if args.output and (problem := postprocess.output_problem(args.output)):
        print("error: " + problem, file=sys.stderr)
        return 2
    paths, problems = collect(args.images)
    for msg in problems:
        print(f"error: {msg}", file=sys.stderr)
    clf = Classifier()
    good, bad = [], []
    for p in paths:  # check every image first, so one bad file is named instead of failing the batch
        try:
            clf.pixels(p)
            good.append(p)
        except Exception as e:  # noqa: BLE001 - any unreadable image is reported by name and skipped
            bad.append(p)
            print(f"error: {p}: not a readable image ({type(e).__name__}: {e})", file=sys.stderr)
    if not good:
        print("error: no readable images", file=sys.stderr)
        return 2
    if clf.post.ranks:
        _write_top_k(clf, good, args)
    else:
        _write_predictions(clf, good, args)
    return 1 if (bad or problems) else 0


def _write_top_k(clf: Classifier, paths: list[Path], args) -> None:
    """Single-label: the ``--top-k`` most probable labels of each image, printed or as CSV."""
    probs = clf.probabilities(paths)
    k = max(1, min(args.top_k, len(clf.labels)))
    rows = []
    for p, row in zip(paths, probs):
        top = np.argsort(-row)[:k]
        rows.append((str(p), [(clf.labels[j], float(row[j])) for j in top]))
    if args.output:
        with open(args.output, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            extra = [f"{name}_{i}" for i in range(2, k + 1) for name in ("label", "confidence")]
            w.writerow(["path", "label", "confidence", *extra])  # top-1, then the next k-1 labels
            for path, top in rows:
                w.writerow([safe_cell(path)] + [v for label, conf in top for v in (safe_cell(label), f"{conf:.6f}")])
        print(f"wrote {len(rows)} predictions to {args.output}")
    else:
        for path, top in rows:
            print(path + "\t" + "\t".join(f"{label} {conf:.4f}" for label, conf in top))


def _write_predictions(clf: Classifier, paths: list[Path], args) -> None:
    """Multi-label and regression: the task's prediction of each image (postprocess.py), printed or as CSV."""
    decisions, probs = clf.post.decide(clf.logits(paths))
    rows = [(str(p), decisions[i], None if probs is None else probs[i]) for i, p in enumerate(paths)]
    if args.output:
        with open(args.output, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["path"] + clf.post.header())
            for path, pred, prob in rows:
                w.writerow([safe_cell(path)] + clf.post.cells(pred, prob))
        print(f"wrote {len(rows)} predictions to {args.output}")
    else:
        for path, pred, prob in rows:
            print(path + "\t" + clf.post.line(pred, prob))


if __name__ == "__main__":
    sys.exit(main())
