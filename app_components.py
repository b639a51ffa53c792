"""Gradio components with behaviour the app needs and Gradio does not offer: File / DownloadButton values that
are signed links (no copy in Gradio's cache), an Image that says "not an image" instead of a generic error, a File
whose type is checked by our readers; and the console settings of the server process.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import gradio as gr

def _with_methods(component, **methods):
    """Give ``component`` the ``methods`` (e.g. postprocess) by making it an instance of a subclass marked as a
    template of its class: the page shows the same widget, and the copies Gradio makes of a component on every
    ``gr.update`` (``type(block)(**kwargs)``) keep the methods, which an instance attribute would not."""
    from abc import ABCMeta

    base = type(component)
    attrs = {"is_template": True, "__module__": __name__, "__qualname__": base.__name__, **methods}
    # ABCMeta.__new__ directly: ComponentMeta.__new__ would re-register the events the base class already has
    # and write a .pyi stub next to this file
    component.__class__ = ABCMeta.__new__(type(base), base.__name__, (base,), attrs)
    return component


def _links_only(component):
    """Make a File / DownloadButton take signed download links (absolute URLs) as its value, shown as they are.
    Gradio would fetch a URL value into its cache (a copy per export) and copy a path value there (only from
    served folders); a FileData whose ``url`` is absolute goes to the browser unchanged."""
    from gradio.data_classes import FileData, ListFiles

    def link(url: str) -> FileData:
        return FileData(path=url, url=url, orig_name=url.split("?")[0].rsplit("/", 1)[-1])

    def postprocess(self, value):
        if value is None:
            return None
        return ListFiles(root=[link(v) for v in value]) if isinstance(value, list) else link(value)

    return _with_methods(component, postprocess=postprocess)


def _image_or_message(component):
    """gr.Image opens an upload with Pillow before the handler runs, so a file that is not an image fails there
    with Gradio's generic "upstream app raised an exception". Say what is wrong instead."""
    base = type(component)

    def preprocess(self, payload):
        try:
            return base.preprocess(self, payload)
        except (OSError, ValueError, SyntaxError) as e:  # PIL.UnidentifiedImageError is an OSError
            name = getattr(payload, "orig_name", None) or Path(getattr(payload, "path", None) or "the file").name
            raise gr.Error(f"{name} is not an image: upload PNG, JPEG, BMP, GIF, WebP or TIFF.",
                           print_exception=False) from e

    return _with_methods(component, preprocess=preprocess)


def _type_checked_by_reader(component):
    """A gr.File checks ``file_types`` before the handler runs and fails the whole event (every output turns to
    "Error", with a generic list of types). Pass the upload's path on instead: the readers say what the file is
    and how to fix it (load_preview shows that as one message). Spreadsheets get past the page's own type
    check too, so that the app can say how to convert them."""
    from gradio.data_classes import ListFiles
    from gradio.utils import NamedString

    def preprocess(self, payload):
        if payload is None:
            return None
        return NamedString((payload[0] if isinstance(payload, ListFiles) else payload).path)

    if component.file_count == "single" and component.type == "filepath":
        _with_methods(component, preprocess=preprocess)
        if component.file_types:
            component.file_types = list(component.file_types) + [t for t in SPREADSHEETS
                                                                 if t not in component.file_types]
    return component


SPREADSHEETS = (".xlsx", ".xlsm", ".xls", ".xlsb", ".ods", ".numbers")


def quiet_console() -> None:
    """Keep the server console for what an operator can act on (the URL, errors, run deletions). For this
    process only (the core library is left alone): pandas' Pandas4Warning raised inside Gradio's queue,
    transformers' and huggingface_hub's progress bars and info lines (weight loading), and the ONNX exporter's
    INFO lines (``python app.py`` logs at INFO). Run by ``launch()``."""
    import warnings

    try:
        from pandas.errors import Pandas4Warning
    except ImportError:  # pandas < 3
        Pandas4Warning = None  # noqa: N806
    if Pandas4Warning is not None:  # e.g. "is_categorical_dtype is deprecated", from gr.LinePlot at every tick
        warnings.filterwarnings("ignore", category=Pandas4Warning, module=r"gradio(\.|$)")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    from huggingface_hub.utils import disable_progress_bars

    disable_progress_bars()
    for name in ("onnxscript", "onnx_ir", "torch.onnx", "torch.export", "torch._dynamo", "httpx", "datasets"):
        logging.getLogger(name).setLevel(logging.WARNING)

