"""Image preprocessing as data: resize, rescale to [0, 1], normalise per channel; the same steps in the bundle.

:class:`ImagePreprocessor` is the image counterpart of a tokenizer: called on a batch of images (file paths or
``PIL.Image``) it returns ``{"pixel_values": float32 [batch, 3, height, width]}``. Its fields are written to the
bundle (``preprocessor_config.json`` in the layout of transformers' ``ViTImageProcessor``), and the bundle's
``predict.py`` repeats the same numpy + Pillow steps, so PyTorch and ONNX Runtime see identical pixels.

Images are opened with Pillow, EXIF orientation applied, and converted to RGB (grayscale, palette and RGBA
images become RGB; 16-bit grayscale is scaled to 8 bits (value >> 8); transparent pixels are composited on
white). Pillow's decompression-bomb guard is set from
``PEFT_MAX_IMAGE_PIXELS``.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
# ImageNet mean / std in [0, 1] units: torchvision's reference values, used by the EfficientNet-Lite port
# (efficientnet-lite-pytorch's example) and most ImageNet classifiers.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")  # Pillow modes of 16-bit grayscale images
RESAMPLE = {"nearest": 0, "lanczos": 1, "bilinear": 2, "bicubic": 3}  # PIL.Image.Resampling values


def max_image_pixels() -> int:
    """Largest image (width x height) opened; ``PEFT_MAX_IMAGE_PIXELS``, default 40 million."""
    return int(float(os.environ.get("PEFT_MAX_IMAGE_PIXELS", "40000000")))


def open_image(fp):
    """Open an image (path or binary file object) without decoding its pixels: ``PIL.Image`` with size, mode and
    format read from the header.

    Raises:
        ValueError: not an image, a damaged header, or more than ``max_image_pixels()`` pixels (the message says
            which).
    """
    import warnings

    from PIL import Image, UnidentifiedImageError

    Image.MAX_IMAGE_PIXELS = max_image_pixels()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(fp)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ValueError(f"image too large (decompression-bomb guard): {e}") from None
    except UnidentifiedImageError:
        raise ValueError("not a readable image file") from None
    except (OSError, SyntaxError) as e:
        raise ValueError(f"corrupt or truncated image: {e}") from None
    if img.width * img.height > max_image_pixels():
        raise ValueError(f"image is {img.width}x{img.height} pixels, over the limit of {max_image_pixels():,} "
                         "(PEFT_MAX_IMAGE_PIXELS)")
    return img


def to_8bit(img):
    """A 16-bit grayscale image (Pillow modes ``I;16*``, or ``I``, as older Pillow opens 16-bit PNGs) as 8-bit
    ``L`` with value >> 8 (0..65535 -> 0..255); other images unchanged. (Pillow's ``convert`` would clip every
    value above 255 to 255.)"""
    from PIL import Image

    if img.mode not in SIXTEEN_BIT:
        return img
    arr = np.clip(np.asarray(img).astype(np.int64), 0, 65535) >> 8
    return Image.fromarray(arr.astype(np.uint8))


def load_rgb(path_or_image):
    """Open an image as RGB ``PIL.Image`` (EXIF rotation applied; 16-bit grayscale scaled to 8 bits; alpha
    composited on white).

    Raises:
        ValueError: not an image, truncated or corrupt, or larger than ``max_image_pixels()`` (the message says
            which).
    """
    from PIL import Image, ImageOps

    if isinstance(path_or_image, Image.Image):
        img = path_or_image
    else:
        img = open_image(path_or_image)
        try:
            img.load()
        except (OSError, SyntaxError) as e:
            raise ValueError(f"corrupt or truncated image: {e}") from None
    img = to_8bit(ImageOps.exif_transpose(img))
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return img.convert("RGB")


@dataclass
class ImagePreprocessor:
    """Resize to ``size`` = (height, width) with ``resample``, scale by 1/255, subtract ``image_mean`` and divide
    by ``image_std`` (per RGB channel, [0, 1] units). Output float32 [batch, 3, height, width]."""

    size: tuple[int, int] = (224, 224)
    image_mean: tuple[float, ...] = IMAGENET_MEAN
    image_std: tuple[float, ...] = IMAGENET_STD
    resample: str = "bilinear"
    model_input_names: list[str] = field(default_factory=lambda: ["pixel_values"])

    def __post_init__(self) -> None:
        self.size = (int(self.size[0]), int(self.size[1]))
        self.image_mean, self.image_std = tuple(map(float, self.image_mean)), tuple(map(float, self.image_std))
        if self.resample not in RESAMPLE:
            raise ValueError(f"resample must be one of {sorted(RESAMPLE)}, got {self.resample!r}")

    def pixels(self, image) -> np.ndarray:
        """One image (path or PIL) -> float32 [3, height, width]. Raises ValueError for a bad image."""
        img = load_rgb(image).resize((self.size[1], self.size[0]), RESAMPLE[self.resample])
        arr = np.asarray(img, dtype=np.float32) / 255.0  # [h, w, 3]
        arr = (arr - np.asarray(self.image_mean, np.float32)) / np.asarray(self.image_std, np.float32)
        return arr.transpose(2, 0, 1)

    def __call__(self, images: Sequence) -> dict[str, torch.Tensor]:
        return {"pixel_values": torch.from_numpy(np.stack([self.pixels(i) for i in images]))}

    def to_dict(self) -> dict:
        """The fields in transformers' ``ViTImageProcessor`` config layout (``size`` as height / width)."""
        d = asdict(self)
        d.update(size={"height": self.size[0], "width": self.size[1]}, resample=RESAMPLE[self.resample],
                 resample_name=self.resample, do_resize=True, do_rescale=True, rescale_factor=1 / 255,
                 do_normalize=True, image_processor_type="ViTImageProcessor")
        return d

    def save_pretrained(self, folder: str | Path) -> Path:
        """Write ``preprocessor_config.json`` into ``folder``; returns its path."""
        out = Path(folder) / "preprocessor_config.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(self.to_dict(), indent=2))
        return out

    @classmethod
    def from_config(cls, cfg: dict) -> "ImagePreprocessor":
        """From a transformers image-processor config (ViT, ConvNeXt, ResNet... layouts): ``size`` as
        height/width or shortest_edge (then square), mean/std (ImageNet if absent), resample id or name."""
        size = cfg.get("size") or {"height": 224, "width": 224}
        if isinstance(size, int):
            size = {"height": size, "width": size}
        h = size.get("height") or size.get("shortest_edge") or 224
        w = size.get("width") or size.get("shortest_edge") or h
        crop = cfg.get("crop_size")
        if cfg.get("do_center_crop") and isinstance(crop, dict) and crop.get("height"):
            h, w = crop["height"], crop["width"]  # resized straight to the crop size: no border to cut away
        resample = cfg.get("resample_name") or cfg.get("resample", 2)
        if isinstance(resample, int):
            resample = {v: k for k, v in RESAMPLE.items()}.get(resample, "bilinear")
        mean = cfg.get("image_mean", IMAGENET_MEAN) if cfg.get("do_normalize", True) else (0.0, 0.0, 0.0)
        std = cfg.get("image_std", IMAGENET_STD) if cfg.get("do_normalize", True) else (1.0, 1.0, 1.0)
        return cls(size=(h, w), image_mean=tuple(mean), image_std=tuple(std), resample=resample)

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> "ImagePreprocessor":
        """Read ``preprocessor_config.json`` from a local folder (or defaults when there is none)."""
        path = Path(folder) / "preprocessor_config.json"
        return cls.from_config(json.loads(path.read_text())) if path.is_file() else cls()
