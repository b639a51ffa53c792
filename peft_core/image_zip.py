"""Safe extraction of the image files of an uploaded zip: what is checked before and while each byte is written.

Before anything is written (a failure refuses the whole archive):

* every entry's path: absolute paths, drive letters, ``..`` and symbolic links refuse the archive;
* the number of image files (``PEFT_MAX_IMAGES``) and their declared uncompressed total (``PEFT_MAX_UNZIPPED_MB``);
* each image file's declared size against :func:`max_image_file_bytes`, the most any image of at most
  ``PEFT_MAX_IMAGE_PIXELS`` pixels can need: 4 channels x 2 bytes (16 bits) per pixel, plus 4 MB of metadata
  (EXIF, ICC profile). 40 million pixels allow 324 MB.

Then, image by image:

* its header is read from the archive stream with Pillow (size, mode and format; no pixel is decoded). A file that
  is not an image, or has more than ``PEFT_MAX_IMAGE_PIXELS`` pixels, is skipped without being written. For
  single-frame PNG, JPEG and BMP files, whose size follows from their pixels, a declared size over 4 x (width x
  height x channels x bytes per sample) + 4 MB refuses the archive: a real file of those pixels is never that
  large (compressed data with zeros behind a small header is a "zip bomb");
* bytes are copied in 1 MB chunks and the copy stops at the file's bound and at the archive's remaining budget
  (``zipfile`` itself also stops at the declared size, so a forged header cannot expand further).

On refusal, the files already written by this extraction are removed.
"""
from __future__ import annotations

import stat
import zipfile
from pathlib import Path, PurePosixPath

from .errors import DataError
from .images import IMAGE_EXTENSIONS, max_image_pixels, open_image
from .limits import Limits
from .readers import check_size

JUNK = {"__macosx", ".ds_store", "thumbs.db", "desktop.ini"}
METADATA_BYTES = 4_000_000  # headroom for EXIF, ICC profiles, XMP and text chunks
SIZED_FORMATS = {"PNG", "JPEG", "BMP"}  # single-frame formats whose file size is bounded by their pixels
CHUNK = 1 << 20


def open_zip(path: Path, limits: Limits) -> zipfile.ZipFile:
    """The uploaded archive, open. Raises DataError when it is missing, empty, over the upload limit or not a zip."""
    if not path.is_file():
        raise DataError(f"file not found: {path}")
    check_size(path, limits, "upload a zip of class folders", "upload fewer or smaller images")
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise DataError(f"{path.name} is not a readable zip archive ({e}); it may be truncated or another kind of "
                        "file: zip the class folders again and upload the .zip") from None


def max_image_file_bytes() -> int:
    """The most bytes an image file of at most ``max_image_pixels()`` pixels can need (see the module doc)."""
    return max_image_pixels() * 4 * 2 + METADATA_BYTES


def entry_parts(info: zipfile.ZipInfo, archive: str) -> tuple[str, ...]:
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


def list_images(z: zipfile.ZipFile, archive: str, limits: Limits):
    """The image entries of an open archive, checked as the module doc says, before anything is written.

    Returns:
        (entries: list of (ZipInfo, path parts), skipped: names of non-image files, ignored: count of system files).
    Raises:
        DataError: an unsafe entry, too many images, too many bytes in all or in one image, no image at all.
    """
    entries, skipped, ignored = [], [], 0
    for info in z.infolist():
        parts = entry_parts(info, archive)  # every entry is checked before any is extracted
        if info.is_dir() or not parts:
            continue
        if _is_junk(parts):
            ignored += 1
        elif PurePosixPath(parts[-1]).suffix.lower() not in IMAGE_EXTENSIONS:
            skipped.append("/".join(parts))
        else:
            entries.append((info, parts))
    if len(entries) > limits.max_images:
        raise DataError(f"{archive} holds {len(entries)} images; the limit is {limits.max_images} "
                        "(PEFT_MAX_IMAGES); upload a sample")
    declared = sum(i.file_size for i, _ in entries)
    if declared > limits.max_unzipped_mb * 1e6:
        raise DataError(f"{archive} expands to {declared / 1e6:.4g} MB of images; the limit is "
                        f"{limits.max_unzipped_mb:g} MB (PEFT_MAX_UNZIPPED_MB); nothing was extracted")
    cap = max_image_file_bytes()
    big = next(((i, p) for i, p in entries if i.file_size > cap), None)
    if big:
        raise DataError(f"{archive}: {'/'.join(big[1])} expands to {big[0].file_size / 1e6:.4g} MB, more than an "
                        f"image of at most {max_image_pixels():,} pixels (PEFT_MAX_IMAGE_PIXELS) can need "
                        f"({cap / 1e6:.4g} MB: 4 channels x 2 bytes per pixel + {METADATA_BYTES / 1e6:g} MB); the "
                        "archive is refused (nothing was extracted)")
    if not entries:
        raise DataError(f"{archive} contains no image files ({', '.join(IMAGE_EXTENSIONS)})"
                        + (f"; it has {len(skipped)} other files, e.g. {skipped[0]}" if skipped else ""))
    return entries, skipped, ignored


def _bound(z: zipfile.ZipFile, info: zipfile.ZipInfo, name: str, archive: str) -> int:
    """Most bytes this entry may expand to, from its image header. Raises ValueError when it is not an image
    (or over the pixel limit), DataError when its declared size is more than its pixels can need."""
    with z.open(info) as fp:
        img = open_image(fp)
        fmt, mode, (w, h) = img.format, img.mode, img.size
        animated = getattr(img, "is_animated", False)
        bands = len(img.getbands())
    if fmt not in SIZED_FORMATS or animated:
        return max_image_file_bytes()
    per_sample = 2 if "16" in mode else 4 if mode in ("I", "F") else 1
    bound = 4 * w * h * bands * per_sample + METADATA_BYTES
    if info.file_size > bound:
        raise DataError(f"{archive}: {name} expands to {info.file_size / 1e6:.4g} MB, but its header says it is a "
                        f"{w}x{h} {fmt} image (mode {mode}), which needs at most {bound / 1e6:.3g} MB; the "
                        "archive is refused (a small image header in front of a mass of compressed data is a zip "
                        "bomb)")
    return bound


def extract_image(z: zipfile.ZipFile, info: zipfile.ZipInfo, name: str, target: Path, budget: list[int],
                  archive: str) -> None:
    """Write one image entry to ``target`` after checking its header (see the module doc).

    Args:
        name: the entry's path in the archive, for messages.
        budget: [bytes the archive may still expand to]; decreased by what is written.
    Raises:
        ValueError: not an image or over the pixel limit (nothing written; the caller skips it by name).
        DataError: more bytes than the entry's bound or the archive's budget (the partial file is removed).
    """
    bound = _bound(z, info, name, archive)
    written = 0
    try:
        with z.open(info) as src, open(target, "wb") as out:
            while chunk := src.read(CHUNK):
                written += len(chunk)
                budget[0] -= len(chunk)
                if budget[0] < 0:
                    raise DataError(f"{archive}: expands to more than the limit of uncompressed data "
                                    "(PEFT_MAX_UNZIPPED_MB); the archive is refused")
                if written > bound:
                    raise DataError(f"{archive}: {name} expands to more than {bound / 1e6:.4g} MB, the most its "
                                    "header allows; the archive is refused")
                out.write(chunk)
    except DataError:
        target.unlink(missing_ok=True)
        raise


def extract_file(z: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, most: int, archive: str) -> None:
    """Write a non-image entry (a metadata table) to ``target``, refusing it when it is, or expands to, more than
    ``most`` bytes (the partial file is removed)."""
    name = info.filename
    if info.file_size > most:
        raise DataError(f"{archive}: {name} expands to {info.file_size / 1e6:.4g} MB, more than the upload limit "
                        f"({most / 1e6:.4g} MB, PEFT_MAX_UPLOAD_MB); the archive is refused")
    written = 0
    try:
        with z.open(info) as src, open(target, "wb") as out:
            while chunk := src.read(CHUNK):
                written += len(chunk)
                if written > most:
                    raise DataError(f"{archive}: {name} expands to more than {most / 1e6:.4g} MB; the archive is "
                                    "refused")
                out.write(chunk)
    except DataError:
        target.unlink(missing_ok=True)
        raise
