"""Load an uploaded image-folder zip into train / validation / test splits with a TaskSpec and a DataReport.

Layout (the usual "image folder", as in ``datasets``' imagefolder and torchvision's ``ImageFolder``): one folder
per class, ``cat/001.jpg``, ``dog/002.png``..., optionally all under one top folder, and optionally split at the
top into ``train/`` and ``validation/`` (or ``val/``, ``test/``): ``train/cat/001.jpg``. Without a given
held-out folder the images are split stratified and seeded, as for tables.

The archive is checked before anything is extracted: entries with absolute paths, ``..``, drive letters or
symlinks refuse the whole archive; so do more than ``max_images`` files or more than ``max_unzipped_mb``
uncompressed bytes (as declared, and enforced again while copying, so a forged header cannot expand further).
Non-image files are skipped and named; images Pillow cannot read (corrupt, truncated, decompression bombs) are
skipped and named. System clutter (``__MACOSX/``, ``.DS_Store``, ``Thumbs.db``, hidden files) is ignored.
"""
from __future__ import annotations

import os
import stat
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

import pandas as pd

from .errors import DataError
from .images import IMAGE_EXTENSIONS, load_rgb
from .limits import Limits
from .readers import check_size
from .tasks import TaskSpec
from .validation import check_classes

HELD_OUT_NAMES = {"validation": "test", "val": "test", "valid": "test", "test": "test", "eval": "test"}
JUNK = {"__macosx", ".ds_store", "thumbs.db", "desktop.ini"}


def _entry_parts(info: zipfile.ZipInfo, archive: str) -> tuple[str, ...]:
    """Path components of a zip entry. Raises DataError for absolute paths, drive letters, ``..`` or links."""
    name = info.filename.replace("\\", "/")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise DataError(f"{archive}: entry {info.filename!r} has an absolute path; the archive is refused "
                        "(nothing was extracted). Zip the class folders with relative paths")
    parts = tuple(p for p in PurePosixPath(name).parts if p not in ("", "."))
    if ".." in parts:
        raise DataError(f"{archive}: entry {info.filename!r} points outside the archive ('..'); the archive is "
                        "refused (nothing was extracted)")
    if stat.S_ISLNK(info.external_attr >> 16):
        raise DataError(f"{archive}: entry {info.filename!r} is a symbolic link; the archive is refused (nothing "
                        "was extracted). Zip the files themselves")
    return parts


def _is_junk(parts: tuple[str, ...]) -> bool:
    return any(p.lower() in JUNK or p.startswith(".") for p in parts)


def _copy_capped(z: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, budget: list[int], archive: str) -> None:
    """Extract one entry, stopping when the archive's byte budget is spent (a header can lie about sizes)."""
    with z.open(info) as src, open(target, "wb") as out:
        while chunk := src.read(1 << 20):
            budget[0] -= len(chunk)
            if budget[0] < 0:
                raise DataError(f"{archive}: expands to more than the limit of uncompressed data "
                                "(PEFT_MAX_UNZIPPED_MB); the archive is refused")
            out.write(chunk)


def scan_zip(path: str | Path, dest: str | Path, limits: Limits | None = None) -> tuple[pd.DataFrame, dict]:
    """Check and extract an image-folder zip into ``dest``.

    Returns:
        (frame with columns ``image`` (extracted file path, str), ``label`` (class folder name), ``split``
        ("train" or "test" — "test" for images under a top ``validation/``/``val/``/``test/`` folder)),
        notes dict: ``skipped_files`` (non-image names), ``unreadable`` ({name: reason}), ``ignored`` (count).
    Raises:
        DataError: not a zip / truncated; unsafe entries; over the limits; no class folders; no images.
    """
    limits = limits or Limits.from_env()
    path, dest = Path(path), Path(dest).resolve()
    archive = path.name
    if not path.is_file():
        raise DataError(f"file not found: {path}")
    check_size(path, limits, "upload a zip of class folders", "upload fewer or smaller images")
    try:
        z = zipfile.ZipFile(path)
        infos = z.infolist()
    except (zipfile.BadZipFile, OSError) as e:
        raise DataError(f"{archive} is not a readable zip archive ({e}); it may be truncated or another kind of "
                        "file: zip the class folders again and upload the .zip") from None
    with z:
        entries, skipped, ignored = [], [], 0
        for info in infos:
            parts = _entry_parts(info, archive)  # every entry is checked before any is extracted
            if info.is_dir() or not parts:
                continue
            if _is_junk(parts):
                ignored += 1
                continue
            if PurePosixPath(parts[-1]).suffix.lower() not in IMAGE_EXTENSIONS:
                skipped.append("/".join(parts))
                continue
            entries.append((info, parts))
        if len(entries) > limits.max_images:
            raise DataError(f"{archive} holds {len(entries)} images; the limit is {limits.max_images} "
                            "(PEFT_MAX_IMAGES); upload a sample")
        declared = sum(i.file_size for i, _ in entries)
        if declared > limits.max_unzipped_mb * 1e6:
            raise DataError(f"{archive} expands to {declared / 1e6:.4g} MB of images; the limit is "
                            f"{limits.max_unzipped_mb:g} MB (PEFT_MAX_UNZIPPED_MB); nothing was extracted")
        if not entries:
            raise DataError(f"{archive} contains no image files ({', '.join(IMAGE_EXTENSIONS)})"
                            + (f"; it has {len(skipped)} other files, e.g. {skipped[0]}" if skipped else ""))
        # drop one common top folder ("mnist/0/1.png" -> "0/1.png")
        while len({p[0] for _, p in entries}) == 1 and all(len(p) > 2 for _, p in entries):
            entries = [(i, p[1:]) for i, p in entries]
        flat = [p for _, p in entries if len(p) < 2]
        if flat:
            raise DataError(f"{archive}: images must be inside one folder per class (e.g. cat/001.jpg), but "
                            f"{len(flat)} are at the top, e.g. {flat[0][0]!r}; put each class in its own folder")
        tops = {p[0].lower() for _, p in entries}
        split_layout = "train" in tops and all(len(p) >= 3 for _, p in entries if p[0].lower() in
                                               {"train", *HELD_OUT_NAMES})
        dest.mkdir(parents=True, exist_ok=True)
        budget = [int(limits.max_unzipped_mb * 1e6)]
        rows, unreadable = [], {}
        for n, (info, parts) in enumerate(entries):
            split = "train"
            if split_layout and parts[0].lower() in {"train", *HELD_OUT_NAMES}:
                split = "train" if parts[0].lower() == "train" else "test"
                parts = parts[1:]
            label, name = parts[0], "/".join(parts)
            target = (dest / f"{n:06d}{PurePosixPath(parts[-1]).suffix.lower()}").resolve()
            if dest not in target.parents:  # cannot happen with the generated name; kept as a last guard
                raise DataError(f"{archive}: entry {info.filename!r} would be written outside the upload folder")
            _copy_capped(z, info, target, budget, archive)
            try:
                load_rgb(target)
            except ValueError as e:
                unreadable[info.filename] = str(e)
                target.unlink(missing_ok=True)
                continue
            rows.append({"image": str(target), "label": label, "split": split, "name": name})
    if not rows:
        raise DataError(f"{archive}: none of its {len(entries)} image files could be read; e.g. "
                        f"{next(iter(unreadable))}: {next(iter(unreadable.values()))}")
    return pd.DataFrame(rows), {"skipped_files": skipped, "unreadable": unreadable, "ignored": ignored}


def prepare_image_data(train_file: str | Path, test_file: str | Path | None = None, *, test_fraction: float = 0.2,
                       validation_fraction: float = 0.1, seed: int = 42, limits: Limits | None = None,
                       extract_dir: str | Path | None = None):
    """Image-folder zip(s) -> ``PreparedData`` with splits of columns ``image`` (file path) and ``label`` (int id).

    Args:
        train_file: the zip (see module doc); a top ``validation/``/``test/`` folder is the held-out split.
        test_file: optional second zip of class folders used as the held-out split.
        extract_dir: where images are extracted (default: a new temporary folder).
    Raises:
        DataError: see :func:`scan_zip`; fewer than 2 classes, too many, or classes too small to split.
    """
    from .data import DataReport, PreparedData, _split, _to_datasets, small_split_warnings

    limits = limits or Limits.from_env()
    root = Path(extract_dir) if extract_dir else Path(tempfile.mkdtemp(prefix="peft_images_"))
    frame, notes = scan_zip(train_file, root / "upload", limits)
    if test_file is not None:
        test_frame, test_notes = scan_zip(test_file, root / "test_upload", limits)
        test_frame["split"] = "test"
        frame = pd.concat([frame[frame["split"] == "train"], test_frame], ignore_index=True)
        for k in ("skipped_files", "ignored"):
            notes[k] += test_notes[k]
        notes["unreadable"].update(test_notes["unreadable"])
    warnings = check_classes(frame["label"], "class folder", False, limits)
    classes = sorted(frame["label"].unique().tolist())
    given = frame[frame["split"] == "test"]
    df = frame[frame["split"] == "train"].reset_index(drop=True)
    if len(given):
        unseen = ~given["label"].isin(df["label"].unique())
        if unseen.any():
            warnings.append(f"{int(unseen.sum())} held-out images of classes absent from training were dropped: "
                            + ", ".join(sorted(given["label"][unseen].unique())[:10]))
            given = given[~unseen]
        classes = sorted(df["label"].unique().tolist())
        train, val = _split(df, validation_fraction, seed, "validation")
        test = given.reset_index(drop=True)
    else:
        rest, test = _split(df, test_fraction, seed, "test")
        train, val = _split(rest, validation_fraction / (1 - test_fraction), seed, "validation")
    parts = {k: v.rename(columns={"image": "text"}) for k, v in {"train": train, "validation": val,
                                                                  "test": test}.items()}
    splits, counts = _to_datasets(parts, classes)
    splits = splits.rename_column("text", "image")
    if notes["skipped_files"]:
        warnings.append(f"{len(notes['skipped_files'])} non-image files skipped: "
                        + ", ".join(notes["skipped_files"][:10]) + (" ..." if len(notes["skipped_files"]) > 10 else ""))
    if notes["unreadable"]:
        bad = list(notes["unreadable"].items())
        warnings.append(f"{len(bad)} unreadable images skipped: "
                        + "; ".join(f"{k} ({v})" for k, v in bad[:10]) + (" ..." if len(bad) > 10 else ""))
    if notes["ignored"]:
        warnings.append(f"{notes['ignored']} system files ignored (__MACOSX, .DS_Store, hidden files)")
    warnings += small_split_warnings({k: len(v) for k, v in splits.items()})
    dropped = {k: v for k, v in {"not an image file": len(notes["skipped_files"]),
                                 "unreadable image": len(notes["unreadable"])}.items() if v}
    task = TaskSpec(kind="image-classification", text_column="image", label_column="class folder",
                    id2label={i: str(c) for i, c in enumerate(classes)})
    report = DataReport(source=str(train_file), format="zip of image folders", columns=["image", "class folder"],
                        text_column="image", label_column="class folder",
                        rows_read=len(frame) + len(notes["unreadable"]), dropped_rows=dropped,
                        split_sizes={k: len(v) for k, v in splits.items()}, class_counts=counts, warnings=warnings)
    return PreparedData(splits=splits, task=task, report=report)


def is_image_upload(path: str | Path | None) -> bool:
    """True for a ``.zip`` upload (image folders); tables have their own extensions."""
    return path is not None and os.fspath(path).lower().endswith(".zip")
