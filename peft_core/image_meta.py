"""Image zips with a metadata file: ``metadata.csv`` or ``metadata.jsonl`` beside the images (``datasets``'
imagefolder convention), for every task kind.

Layout: one metadata file anywhere in the archive; its ``file_name`` column gives each image's path relative to the
metadata file's folder (``images/0001.png``); the other columns are targets: one label column (single-label, or
label sets for multi-label), several 0/1 columns (one-hot multi-label) or a numeric column (regression), chosen and
inferred as for tables (``peft_core.task_infer``). A second zip (with its own metadata file) is the test split;
otherwise validation and test are carved out as for tables (``peft_core.target_kinds``).

Safety: every entry of the archive is checked before anything is written (``peft_core.image_zip.list_images``),
the metadata file is extracted under the upload-size limit, and each image through
``peft_core.image_zip.extract_image`` (zip-bomb bound, pixel limit) under a fixed generated name. Rows naming files
that are not in the zip, or naming one file twice, refuse the upload (with the metadata lines); images the metadata
does not name are skipped and counted; unreadable images are skipped by name.
"""
from __future__ import annotations

import zipfile
from pathlib import Path, PurePosixPath

import pandas as pd

from .errors import DataError
from .image_zip import entry_parts, extract_file, extract_image, list_images, open_zip
from .images import load_rgb
from .limits import Limits
from .readers import Table, read_upload
from .splits import DataReport, PreparedData, small_split_warnings
from .target_cells import is_missing, listed, read_one_hot
from .target_kinds import TargetContext, assemble, build_targets
from .task_infer import TargetChoice, choose_labels, infer_kind

METADATA_NAMES = ("metadata.csv", "metadata.jsonl")
FILE_COLUMN = "file_name"
FORMAT = "zip of images with a metadata file"


def _metadata_entries(z: zipfile.ZipFile, archive: str) -> list[zipfile.ZipInfo]:
    found = []
    for info in z.infolist():
        parts = entry_parts(info, archive)
        if parts and not info.is_dir() and parts[-1].lower() in METADATA_NAMES and not any(
                p.startswith(".") or p.lower() == "__macosx" for p in parts):
            found.append(info)
    return found


def has_metadata(path: str | Path) -> bool:
    """True when the zip holds a ``metadata.csv`` / ``metadata.jsonl`` (False when it cannot be opened: the
    class-folder reader then says why)."""
    try:
        with zipfile.ZipFile(path) as z:
            return bool(_metadata_entries(z, Path(path).name))
    except (zipfile.BadZipFile, OSError, DataError):
        return False


def _where(name: str) -> str:
    return name.replace("\\", "/").strip().removeprefix("./")


def _read_metadata(z, archive: str, dest: Path, limits: Limits) -> tuple[Table, str, tuple[str, ...]]:
    """(the metadata table, its path in the zip, its folder's parts)."""
    metas = _metadata_entries(z, archive)
    if not metas:
        raise DataError(f"{archive} has no metadata.csv or metadata.jsonl, but the training zip has one; give the test "
                        "zip the same layout (a metadata file with file_name and the same target columns)")
    if len(metas) > 1:
        raise DataError(f"{archive} holds {len(metas)} metadata files ({', '.join(m.filename for m in metas[:5])}); "
                        "keep one metadata.csv (or metadata.jsonl) for all images, and upload the test images as a "
                        "second zip")
    meta = metas[0]
    parts = entry_parts(meta, archive)
    target = dest / f"metadata{PurePosixPath(parts[-1]).suffix.lower()}"
    extract_file(z, meta, target, limits.max_upload_bytes, archive)
    table = read_upload(target, limits)
    if FILE_COLUMN not in table.frame.columns:
        raise DataError(f"{archive}: {meta.filename} has no {FILE_COLUMN!r} column (its columns are "
                        f"{list(table.frame.columns)}); add a column {FILE_COLUMN!r} with each image's path "
                        "relative to the metadata file, as in datasets' imagefolder")
    return table, meta.filename, parts[:-1]


def _match(table: Table, meta: str, base: tuple, entries: list, archive: str) -> tuple[list, int]:
    """(ZipInfo per metadata row, images in the zip the metadata does not name). Raises DataError for rows naming
    files that are not in the zip, empty names, or one file named twice."""
    index = {"/".join(p[len(base):]): info for info, p in entries if p[:len(base)] == base}
    names = table.frame[FILE_COLUMN].map(lambda v: "" if is_missing(v) else _where(str(v)))
    absent = names[~names.isin(index)]
    if len(absent):
        raise DataError(f"{archive}: {meta} names {len(absent)} file(s) that are not in the zip: "
                        f"{listed(table.places(absent.index), absent.tolist())}; add those images to the zip (paths "
                        f"relative to {meta}), or remove their rows from {meta}")
    twice = names[names.duplicated(keep=False)]
    if len(twice):
        raise DataError(f"{archive}: {meta} names the same file more than once: "
                        f"{listed(table.places(twice.index), twice.tolist())}; give each image one row (several "
                        "labels go in one cell or in one-hot columns)")
    return [index[n] for n in names], len(entries) - len(names)


def scan_metadata_zip(path: str | Path, dest: str | Path, limits: Limits) -> tuple[Table, pd.DataFrame, dict]:
    """Check and extract a zip with a metadata file into ``dest``.

    Returns:
        (the metadata table, frame with one row per metadata row: ``image`` (extracted path, None when unreadable),
        ``name`` (path in the zip), ``_row`` (metadata row), notes: ``unreadable`` {name: reason}, ``unnamed``
        (images the metadata does not name), ``skipped_files``, ``ignored``).
    Raises:
        DataError: see ``peft_core.image_zip``; more than one metadata file; no file_name column; rows naming
            files not in the zip or a file twice.
    """
    path, dest = Path(path), Path(dest).resolve()
    archive = path.name
    dest.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with open_zip(path, limits) as z:
        entries, skipped, ignored = list_images(z, archive, limits)
        table, meta, base = _read_metadata(z, archive, dest, limits)
        infos, unnamed = _match(table, meta, base, entries, archive)
        budget = [int(limits.max_unzipped_mb * 1e6)]
        images, unreadable = [], {}
        try:
            for n, info in enumerate(infos):
                target = dest / f"{n:06d}{PurePosixPath(info.filename).suffix.lower()}"
                try:
                    extract_image(z, info, info.filename, target, budget, archive)
                    written.append(target)
                    load_rgb(target)
                except ValueError as e:
                    if isinstance(e, DataError):
                        raise
                    unreadable[info.filename] = str(e)
                    target.unlink(missing_ok=True)
                    images.append(None)
                    continue
                images.append(str(target))
        except DataError:
            for p in written:
                p.unlink(missing_ok=True)
            raise
    frame = pd.DataFrame({"image": images, "name": [i.filename for i in infos], "_row": range(len(infos))})
    skipped = [s for s in skipped if PurePosixPath(s).name.lower() not in METADATA_NAMES]
    return table, frame, {"unreadable": unreadable, "unnamed": unnamed, "skipped_files": skipped, "ignored": ignored}


def _frame(table: Table, scanned: pd.DataFrame, choice: TargetChoice, name: str, dropped: dict) -> pd.DataFrame:
    """Rows with a readable image: ``image``, ``label`` (as read; label sets for one-hot columns), ``_row``."""
    meta = table.frame
    label = (read_one_hot(meta, choice.label_columns, name, table.places) if choice.one_hot
             else meta[choice.label_column].tolist())
    out = scanned.assign(label=label)
    bad = out["image"].isna()
    dropped["unreadable image"] = dropped.get("unreadable image", 0) + int(bad.sum())
    return out[~bad].reset_index(drop=True)


def _shown(v) -> str:
    """A target cell as text for the preview (lists joined by ";", empty cells as "")."""
    if isinstance(v, (list, tuple)):
        return ";".join(map(str, v))
    return "" if is_missing(v) else str(v)


def _warnings(notes: list[dict]) -> list[str]:
    out = []
    unnamed = sum(n["unnamed"] for n in notes)
    if unnamed:
        out.append(f"{unnamed} image(s) in the zip are not named in the metadata file and were not used")
    bad = [kv for n in notes for kv in n["unreadable"].items()]
    if bad:
        out.append(f"{len(bad)} unreadable images skipped: " + "; ".join(f"{k} ({v})" for k, v in bad[:10])
                   + (" ..." if len(bad) > 10 else ""))
    skipped = [s for n in notes for s in n["skipped_files"]]
    if skipped:
        out.append(f"{len(skipped)} non-image files skipped: " + ", ".join(skipped[:10])
                   + (" ..." if len(skipped) > 10 else ""))
    return out


def load_metadata_upload(train_file, test_file=None, *, label_column: str | None = None, task: str | None = None,
                         label_separator: str | None = None, test_fraction: float = 0.2,
                         validation_fraction: float = 0.1, seed: int = 42, limits: Limits, root: Path
                         ) -> tuple[pd.DataFrame, PreparedData]:
    """Zip(s) with a metadata file, extracted once under ``root`` -> (the images found, ``PreparedData``).

    Returns:
        (frame with columns image (extracted path), name (path in the zip), label (the target as written), folder
        (""), split (the split each image went to, or "not used"); PreparedData with splits of columns ``image``
        (file path) and ``label`` as the task kind encodes it; its TaskSpec has modality "image").
    Raises:
        DataError: see :func:`scan_metadata_zip`, ``peft_core.task_infer`` and ``peft_core.target_kinds``.
    """
    files = [Path(train_file)] + ([Path(test_file)] if test_file is not None else [])
    names = [f.name for f in files]
    if len(names) == 2 and names[0] == names[1]:
        names[1] += " (test zip)"
    scanned = [scan_metadata_zip(f, root / d, limits) for f, d in zip(files, ("upload", "test_upload"))]
    tables = [s[0] for s in scanned]
    labels, inferred = choose_labels(tables[0].frame, label_column, {FILE_COLUMN})
    kind, sep, reason = infer_kind(tables[0].frame, labels, task, label_separator)
    choice = TargetChoice(kind, "image", labels, None, sep, reason, inferred)
    for t, n in zip(tables[1:], names[1:]):
        lacking = [c for c in labels if c not in t.frame.columns]
        if lacking:
            raise DataError(f"the test zip {n}'s metadata lacks column(s) {lacking}; its columns are "
                            f"{list(t.frame.columns)}")
    shown = [f"{n} ({PurePosixPath(t.source).name})" for n, t in zip(names, tables)]
    ctx = TargetContext(choice, shown, [t.places for t in tables], limits, seed, test_fraction, validation_fraction)
    frames = [_frame(t, s[1], choice, n, ctx.dropped) for t, s, n in zip(tables, scanned, shown)]
    targets = build_targets(frames, ctx)
    splits, spec = assemble(targets, ctx, ["image"], modality="image")
    sizes = {k: len(v) for k, v in splits.items()}
    report = DataReport(source=str(train_file), format=FORMAT, columns=list(tables[0].frame.columns),
                        text_column="image", label_column=choice.label_column,
                        rows_read=sum(len(s[1]) for s in scanned),
                        dropped_rows={k: v for k, v in ctx.dropped.items() if v},
                        split_sizes=sizes, class_counts=targets.class_counts,
                        warnings=_warnings([s[2] for s in scanned]) + ctx.warnings + small_split_warnings(sizes),
                        files={n: len(s[1]) for n, s in zip(names, scanned)}, task=kind, task_reason=reason,
                        targets=targets.described, target_summary=targets.summary, no_label_rows=targets.no_label)
    where = {p: s for s, part in targets.parts.items() for p in part["image"]}
    found = pd.concat([s[1].assign(label=[",".join(_shown(v) for v in row)
                                          for row in t.frame[choice.label_columns].itertuples(index=False)])
                       for s, t in zip(scanned, tables)], ignore_index=True)
    found = found.assign(folder="", split=found["image"].map(lambda p: where.get(p, "not used")))
    return found.drop(columns=["_row"]), PreparedData(splits=splits, task=spec, report=report)
