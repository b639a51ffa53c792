"""Load an uploaded image-folder zip into train / validation / test splits with a TaskSpec and a DataReport.

Layout (the usual "image folder", as in ``datasets``' imagefolder and torchvision's ``ImageFolder``): one folder
per class, ``cat/001.jpg``, ``dog/002.png``..., optionally all under one top folder: single-label classification.
A zip that holds a ``metadata.csv`` / ``metadata.jsonl`` (``file_name`` plus target columns, for multi-label,
regression or single-label) is read by ``peft_core.image_meta`` instead.

Split folders. The archive may be split at the top (under the optional common folder) into split folders, each
holding the class folders (``train/cat/001.jpg``); names are matched without regard to case:

* ``train/`` is the training split; it must be there for the other folders to count as splits.
* ``test/`` is the held-out test split.
* ``validation/``, ``val/``, ``valid/``, ``dev/`` or ``eval/`` is the validation split (early stopping) when there
  is also a ``test/`` folder or a separate test zip; without either, it is the held-out test split.
* a split with no folder is carved out of ``train/``, stratified by class and seeded: the test split
  (``test_fraction``) and/or the validation split (``validation_fraction`` of all images).
* with a separate test zip, that zip is the test split, and the archive's own ``test/`` folder is not used
  (the report says so).
* without split folders, all images are split into train / validation / test as for tables.

The data report says which folder became which split. Classes with too few images to give one to every carved
split keep all their images in training (``peft_core.splits``). How the archive is checked and extracted
(paths, sizes, zip bombs, unreadable images) is in ``peft_core.image_zip``. System clutter (``__MACOSX/``,
``.DS_Store``, ``Thumbs.db``, hidden files) is ignored; non-image and unreadable files are skipped and named.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path, PurePosixPath

import pandas as pd

from .errors import DataError
from .image_zip import extract_image, list_images, open_zip
from .images import load_rgb
from .limits import Limits
from .splits import PreparedData, DataReport, held_out_notes, small_split_warnings, stratified_split, to_datasets
from .tasks import TaskSpec
from .validation import check_classes, rare_classes

TRAIN_FOLDERS = ("train",)
VALIDATION_FOLDERS = ("validation", "val", "valid", "dev", "eval")
TEST_FOLDERS = ("test",)
SPLIT_FOLDERS = TRAIN_FOLDERS + VALIDATION_FOLDERS + TEST_FOLDERS


def folder_splits(folders: set[str], has_test_file: bool) -> dict[str, str]:
    """Split folder name (lower case) -> "train", "validation" or "test", by the rules of the module doc."""
    test_elsewhere = has_test_file or any(f in TEST_FOLDERS for f in folders)
    out = {}
    for f in folders:
        if f in TRAIN_FOLDERS or f in TEST_FOLDERS:
            out[f] = "train" if f in TRAIN_FOLDERS else "test"
        elif f in VALIDATION_FOLDERS:
            out[f] = "validation" if test_elsewhere else "test"
    return out


def _folder_split(folders: pd.Series, has_test_file: bool) -> pd.Series:
    """The split of each image from its split folder ("" or not a split name: train)."""
    mapping = folder_splits(set(folders.str.lower()), has_test_file)
    return folders.str.lower().map(lambda f: mapping.get(f, "train"))


def _layout(entries: list, archive: str) -> list:
    """Entries with the common top folder dropped; [(info, parts, split folder or "")]."""
    while len({p[0] for _, p in entries}) == 1 and all(len(p) > 2 for _, p in entries):
        entries = [(i, p[1:]) for i, p in entries]  # "mnist/0/1.png" -> "0/1.png"
    flat = [p for _, p in entries if len(p) < 2]
    if flat:
        raise DataError(f"{archive}: images must be inside one folder per class (e.g. cat/001.jpg), but "
                        f"{len(flat)} are at the top, e.g. {flat[0][0]!r}; put each class in its own folder")
    tops = {p[0].lower() for _, p in entries}
    split_layout = "train" in tops and all(len(p) >= 3 for _, p in entries if p[0].lower() in SPLIT_FOLDERS)
    return [(i, p[1:], p[0]) if split_layout and p[0].lower() in SPLIT_FOLDERS else (i, p, "")
            for i, p in entries]


def scan_zip(path: str | Path, dest: str | Path, limits: Limits | None = None) -> tuple[pd.DataFrame, dict]:
    """Check and extract an image-folder zip into ``dest`` (see ``peft_core.image_zip`` for the checks).

    Returns:
        (frame with columns ``image`` (extracted file path, str), ``label`` (class folder name), ``split``
        ("train", "validation" or "test", by the folder rules of the module doc, as if no test zip were given),
        ``name`` (path inside the archive, split folder removed), ``folder`` (its split folder as written, or "")),
        notes dict: ``skipped_files`` (non-image names), ``unreadable`` ({name: reason}), ``ignored`` (count).
    Raises:
        DataError: not a zip / truncated; unsafe entries; over the limits; a zip bomb; no class folders; no
            readable images.
    """
    limits = limits or Limits.from_env()
    path, dest = Path(path), Path(dest).resolve()
    archive = path.name
    written: list[Path] = []
    with open_zip(path, limits) as z:
        entries, skipped, ignored = list_images(z, archive, limits)
        entries = _layout(entries, archive)
        dest.mkdir(parents=True, exist_ok=True)
        budget = [int(limits.max_unzipped_mb * 1e6)]
        rows, unreadable = [], {}
        try:
            for n, (info, parts, folder) in enumerate(entries):
                target = (dest / f"{n:06d}{PurePosixPath(parts[-1]).suffix.lower()}").resolve()
                if dest not in target.parents:  # cannot happen with the generated name; kept as a last guard
                    raise DataError(f"{archive}: entry {info.filename!r} would be written outside the upload folder")
                try:
                    extract_image(z, info, info.filename, target, budget, archive)
                    written.append(target)
                    load_rgb(target)
                except DataError:
                    raise
                except ValueError as e:  # not an image, over the pixel limit, corrupt: skipped by name
                    unreadable[info.filename] = str(e)
                    target.unlink(missing_ok=True)
                    continue
                rows.append({"image": str(target), "label": parts[0], "folder": folder, "name": "/".join(parts)})
        except DataError:
            for p in written:
                p.unlink(missing_ok=True)
            raise
    if not rows:
        raise DataError(f"{archive}: none of its {len(entries)} image files could be read; e.g. "
                        f"{next(iter(unreadable))}: {next(iter(unreadable.values()))}")
    frame = pd.DataFrame(rows)
    frame["split"] = _folder_split(frame["folder"], False)
    return frame, {"skipped_files": skipped, "unreadable": unreadable, "ignored": ignored}


def is_image_upload(path: str | Path | None) -> bool:
    """True for a ``.zip`` upload (image folders); tables have their own extensions."""
    return path is not None and os.fspath(path).lower().endswith(".zip")




def _scan_all(train_file, test_file, root: Path, limits: Limits):
    """Both zips extracted once: (frame with the final folder-given split, notes, files {name: images},
    split folders {lower case: as written}, warnings)."""
    frame, notes = scan_zip(train_file, root / "upload", limits)
    names = [Path(train_file).name] + ([Path(test_file).name] if test_file is not None else [])
    if len(names) == 2 and names[0] == names[1]:
        names[1] += " (test zip)"
    files = {names[0]: len(frame) + len(notes["unreadable"])}
    folders = {f.lower(): f for f in frame["folder"] if f}
    frame["split"] = _folder_split(frame["folder"], test_file is not None)
    warnings = []
    if test_file is not None:
        test_frame, more = scan_zip(test_file, root / "test_upload", limits)
        files[names[1]] = len(test_frame) + len(more["unreadable"])
        unused = frame["split"] == "test"
        if unused.any():
            warnings.append(f"the test zip {names[1]} is the test split, so the {int(unused.sum())} images under "
                            f"{frame['folder'][unused].iloc[0]}/ in {names[0]} were not used")
        frame = pd.concat([frame[~unused], test_frame.assign(split="test", folder="")], ignore_index=True)
        for k in ("skipped_files", "ignored"):
            notes[k] += more[k]
        notes["unreadable"].update(more["unreadable"])
    return frame, notes, files, folders, warnings


def _layout_note(folders: dict[str, str], given: set[str], train_zip: str, test_zip: str | None) -> list[str]:
    """One line saying which folder (or zip) became which split."""
    if not folders and test_zip is None:
        return []
    carved = [s for s in ("validation", "test") if s not in given]
    mapping = folder_splits(set(folders), test_zip is not None)
    said = []
    for low, written in sorted(folders.items(), key=lambda kv: SPLIT_FOLDERS.index(kv[0])):
        split = mapping[low]
        if split == "train":
            said.append(f"`{written}/` → train" + (f" ({' and '.join(carved)} carved out of it, stratified)"
                                                    if carved else ""))
        elif test_zip and split == "test":
            said.append(f"`{written}/` not used (the test zip is the test split)")
        elif low in VALIDATION_FOLDERS and split == "test":
            said.append(f"`{written}/` → test (there is no test/ folder, so it is the held-out test split)")
        else:
            said.append(f"`{written}/` → {split}")
    if not folders:
        said.append(f"`{train_zip}` → train ({' and '.join(carved)} carved out of it, stratified)")
    if test_zip:
        said.append(f"`{test_zip}` → test")
    return ["Splits: " + ", ".join(said) + "."]


def _splits(frame: pd.DataFrame, classes: list, warnings: list[str], test_fraction: float,
            validation_fraction: float, seed: int) -> tuple[dict[str, pd.DataFrame], set[str]]:
    """train / validation / test frames: folder-given splits as they are, the others carved out of train."""
    df = frame[frame["split"] == "train"].reset_index(drop=True)
    held = frame[frame["split"] != "train"]
    unseen = ~held["label"].isin(classes)
    if unseen.any():
        warnings.append(f"{int(unseen.sum())} held-out images of classes absent from training were dropped: "
                        + ", ".join(sorted(held["label"][unseen].unique())[:10]))
        held = held[~unseen]
    given = set(held["split"])
    carved = tuple(s for s in ("validation", "test") if s not in given)
    rare = rare_classes(df["label"], "class folder", carved)
    parts = {s: held[held["split"] == s].reset_index(drop=True) for s in given}
    rest = df
    if "test" not in given:
        rest, parts["test"] = stratified_split(df, test_fraction, seed, "test", rare)
    if "validation" in given:
        parts["train"] = rest
    else:
        frac = validation_fraction if "test" in given else validation_fraction / (1 - test_fraction)
        parts["train"], parts["validation"] = stratified_split(rest, frac, seed, "validation", rare)
    return {s: parts[s] for s in ("train", "validation", "test")}, given


def _skipped_notes(skipped: list[str], bad: list[tuple[str, str]], ignored: int) -> list[str]:
    """Warnings naming the non-image files and unreadable images skipped, and counting the system files."""
    out = []
    if skipped:
        out.append(f"{len(skipped)} non-image files skipped: " + ", ".join(skipped[:10])
                   + (" ..." if len(skipped) > 10 else ""))
    if bad:
        out.append(f"{len(bad)} unreadable images skipped: " + "; ".join(f"{k} ({v})" for k, v in bad[:10])
                   + (" ..." if len(bad) > 10 else ""))
    if ignored:
        out.append(f"{ignored} system files ignored (__MACOSX, .DS_Store, hidden files)")
    return out


def _folder_choice(task: str | None, label_column: str | None, label_separator: str | None, archive: str) -> None:
    """Refuse target choices a zip of class folders cannot honour (one class per image, from its folder)."""
    kind = None if task is None else str(task).strip().replace("-", "_")
    if kind not in (None, "single_label") or label_column or label_separator:
        asked = (f"the {kind.replace('_', '-')} task" if kind not in (None, "single_label") else
                 f"label column {label_column!r}" if label_column else f"label separator {label_separator!r}")
        raise DataError(f"{archive} is a zip of class folders (one class per image), so {asked} cannot apply; for "
                        f"multi-label or regression add a metadata.csv with a {'file_name'!r} column and the target "
                        "column(s) beside the images (datasets' imagefolder layout)")


def load_image_upload(train_file: str | Path, test_file: str | Path | None = None, *, label_column: str | None = None,
                      task: str | None = None, label_separator: str | None = None, test_fraction: float = 0.2,
                      validation_fraction: float = 0.1, seed: int = 42, limits: Limits | None = None,
                      extract_dir: str | Path | None = None) -> tuple[pd.DataFrame, PreparedData]:
    """Image zip(s), extracted once -> (the images found, ``PreparedData``). A zip holding a ``metadata.csv`` /
    ``metadata.jsonl`` is read by ``peft_core.image_meta`` (every task kind; ``label_column``, ``task`` and
    ``label_separator`` as for tables); a zip of class folders as the module doc says (single-label only).

    Args:
        train_file: the zip (see the module doc for layouts and split folders).
        test_file: optional second zip (class folders, or with its own metadata file) used as the test split.
        extract_dir: where images are extracted (default: a new temporary folder).
    Returns:
        (frame with columns image (extracted path), label (class folder), name (path in the zip), folder (split
        folder or ""), split (the split each image went to, or "not used"); PreparedData with splits of columns
        ``image`` (file path) and ``label`` (int64 id)).
    Raises:
        DataError: see :func:`scan_zip`; fewer than 2 classes, too many, or too few images to split.
    """
    from .image_meta import has_metadata, load_metadata_upload

    limits = limits or Limits.from_env()
    root = Path(extract_dir) if extract_dir else Path(tempfile.mkdtemp(prefix="peft_images_"))
    if has_metadata(train_file):
        return load_metadata_upload(train_file, test_file, label_column=label_column, task=task,
                                    label_separator=label_separator, test_fraction=test_fraction,
                                    validation_fraction=validation_fraction, seed=seed, limits=limits, root=root)
    _folder_choice(task, label_column, label_separator, Path(train_file).name)
    if test_file is not None and has_metadata(test_file):
        raise DataError(f"the test zip {Path(test_file).name} has a metadata file but {Path(train_file).name} is a "
                        "zip of class folders; give both zips the same layout")
    frame, notes, files, folders, warnings = _scan_all(train_file, test_file, root, limits)
    train_labels = frame["label"][frame["split"] == "train"]
    warnings += check_classes(train_labels, "class folder", False, limits)
    classes = sorted(train_labels.unique().tolist())
    parts, given = _splits(frame, classes, warnings, test_fraction, validation_fraction, seed)
    splits, counts = to_datasets(parts, classes, column="image")
    test_zip = list(files)[1] if test_file is not None else None
    sources = {s: f"the {folders[f]}/ folder" for f, s in folder_splits(set(folders), bool(test_zip)).items()
               if s in given}
    sources |= {"test": f"the test zip {test_zip}"} if test_zip else {}
    skipped, bad = notes["skipped_files"], list(notes["unreadable"].items())
    warnings += _skipped_notes(skipped, bad, notes["ignored"])
    warnings += held_out_notes(counts, "class folder", sources)
    warnings += small_split_warnings({k: len(v) for k, v in splits.items()})
    dropped = {k: v for k, v in {"not an image file": len(skipped), "unreadable image": len(bad)}.items() if v}
    task = TaskSpec(kind="single_label", text_column="image", label_column="class folder",
                    id2label={i: str(c) for i, c in enumerate(classes)}, modality="image")
    report = DataReport(source=str(train_file), format="zip of image folders", columns=["image", "class folder"],
                        text_column="image", label_column="class folder", rows_read=sum(files.values()),
                        dropped_rows=dropped, split_sizes={k: len(v) for k, v in splits.items()},
                        class_counts=counts, warnings=warnings, files=files,
                        notes=_layout_note(folders, given, list(files)[0], test_zip), task="single_label",
                        task_reason="each image's class is the folder it is in → single-label",
                        targets=f"**{len(classes)}** classes (one per folder)")
    where = {p: s for s, part in parts.items() for p in part["image"]}
    frame["split"] = frame["image"].map(lambda p: where.get(p, "not used"))
    return frame, PreparedData(splits=splits, task=task, report=report)


def prepare_image_data(train_file: str | Path, test_file: str | Path | None = None, *, label_column: str | None = None,
                       task: str | None = None, label_separator: str | None = None, test_fraction: float = 0.2,
                       validation_fraction: float = 0.1, seed: int = 42, limits: Limits | None = None,
                       extract_dir: str | Path | None = None) -> PreparedData:
    """Image zip(s) -> ``PreparedData`` (see :func:`load_image_upload`, which also returns the images found)."""
    return load_image_upload(train_file, test_file, label_column=label_column, task=task,
                             label_separator=label_separator, test_fraction=test_fraction,
                             validation_fraction=validation_fraction, seed=seed, limits=limits,
                             extract_dir=extract_dir)[1]
