"""Upload limits: how big a dataset the app and the CLI accept, read from environment variables.

Defaults fit a free CPU Hugging Face Space (2 vCPU, 16 GB RAM). Every limit can be changed by an environment
variable, read when :meth:`Limits.from_env` is called (``prepare_data`` calls it unless given ``limits=``):

============================  ===========  ==============================================================
variable                      default      meaning
============================  ===========  ==============================================================
``PEFT_MAX_UPLOAD_MB``        50           largest file accepted, in MB (10**6 bytes); larger files are refused
``PEFT_MAX_ROWS``             200000       most data rows per file; larger files are refused
``PEFT_MAX_CLASSES``          1000         most distinct labels; more are refused
``PEFT_MAX_TEXT_CHARS``       20000        longer texts are cut to this many characters (and reported)
``PEFT_LONG_TEXT_CHARS``      5000         texts longer than this are counted in a warning
``PEFT_MAX_IMAGES``           20000        most image files in a zip; larger archives are refused
``PEFT_MAX_UNZIPPED_MB``      500          most uncompressed bytes of images in a zip (MB), checked before extracting
``PEFT_MAX_IMAGE_PIXELS``     40000000     largest image (width x height); larger ones are skipped as unreadable;
                                           also caps one image file's size (x 8 bytes + 4 MB: 324 MB)
============================  ===========  ==============================================================

Why 500 MB of unzipped images: a free Space has 16 GB of RAM and about 50 GB of ephemeral disk shared by every
user, and each zip is extracted to disk once per preview and once per run (images are then read one batch at a
time, so disk, not RAM, is what an archive costs). 500 MB is 10 x the largest upload (``PEFT_MAX_UPLOAD_MB``):
JPEG and PNG files hardly compress in a zip, so a genuine image archive expands by little more than 1x and is
never near the limit, while a zip bomb is stopped early; 20 previews or runs at the limit at once still fit in
10 GB of disk. ``PEFT_MAX_IMAGE_PIXELS`` is read by ``peft_core.images`` (Pillow's decompression-bomb guard), not
by :class:`Limits`.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields

from .errors import ConfigError

ENV_VARS = {"max_upload_mb": "PEFT_MAX_UPLOAD_MB", "max_rows": "PEFT_MAX_ROWS", "max_classes": "PEFT_MAX_CLASSES",
            "max_text_chars": "PEFT_MAX_TEXT_CHARS", "long_text_chars": "PEFT_LONG_TEXT_CHARS",
            "max_images": "PEFT_MAX_IMAGES", "max_unzipped_mb": "PEFT_MAX_UNZIPPED_MB"}


@dataclass(frozen=True)
class Limits:
    """Limits enforced while loading an upload (see the module doc for the environment variables).

    Attributes:
        max_upload_mb: largest accepted file size in MB (10**6 bytes); float, > 0.
        max_rows: most data rows per file (header excluded); int, >= 1.
        max_classes: most distinct labels after cleaning; int, >= 2.
        max_text_chars: texts longer than this (characters) are cut to it; the tokenizer reads only the first
            ``max_length`` tokens anyway, so this only bounds memory and tokenizing time; int, >= 1.
        long_text_chars: texts longer than this (characters) are counted in a ``DataReport`` warning; int, >= 1.
        max_images: most image files in a zip; int, >= 1.
        max_unzipped_mb: most uncompressed bytes of the image files of a zip, in MB (10**6 bytes); float, > 0.
    Raises:
        ConfigError: a field is not a positive number (or max_classes < 2).
    """

    max_upload_mb: float = 50.0
    max_rows: int = 200_000
    max_classes: int = 1_000
    max_text_chars: int = 20_000
    long_text_chars: int = 5_000
    max_images: int = 20_000
    max_unzipped_mb: float = 500.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ConfigError(f"limit {f.name} ({ENV_VARS[f.name]}) must be a positive number, got {value!r}")
            if f.type in ("int", int) and not float(value).is_integer():
                raise ConfigError(f"limit {f.name} ({ENV_VARS[f.name]}) must be a whole number, got {value!r}")
        if self.max_classes < 2:
            raise ConfigError(f"limit max_classes (PEFT_MAX_CLASSES) must be at least 2, got {self.max_classes}")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1_000_000)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Limits":
        """Defaults overridden by the ``PEFT_*`` variables that are set (``environ`` defaults to os.environ).

        Raises:
            ConfigError: a variable is set to something that is not a positive number.
        """
        environ = os.environ if environ is None else environ
        values: dict = {}
        for f in fields(cls):
            raw = environ.get(ENV_VARS[f.name], "").strip()
            if not raw:
                continue
            try:
                values[f.name] = float(raw) if f.name.endswith("_mb") else int(raw.replace("_", ""))
            except ValueError:
                raise ConfigError(f"environment variable {ENV_VARS[f.name]}={raw!r} is not a "
                                  f"{'number' if f.name.endswith('_mb') else 'whole number'}") from None
        return cls(**values)

    def to_dict(self) -> dict:
        return asdict(self)
