"""Pooled features of a frozen encoder kept across the runs of one process, while a search asks for it.

Every linear-probe run computes the pooled features of its train and validation rows once (``feeds.FeatureFeed``:
the run's "encoding" phase). A search (``peft_core.search``) trains many runs on the same data with the same frozen
encoder, so in-process searches wrap their trials in :func:`reuse_pooled_features` and later runs take the
features the first one computed. The key is the encoder's weights (a checksum of every backbone parameter), the
texts of each split and ``max_length``: a different model, data or length never hits. Outside the block nothing is
kept. Memory: float32 [rows, hidden] per split (banking77, 10k rows x 384: 15 MB); at most :data:`CAPACITY` keys.
"""
from __future__ import annotations

import contextlib
import hashlib
import threading
from collections import OrderedDict

CAPACITY = 2

_lock = threading.Lock()
_depth = 0
_store: OrderedDict = OrderedDict()


@contextlib.contextmanager
def reuse_pooled_features():
    """Within the block (any thread of this process), ``FeatureFeed`` reuses pooled features it computed before
    for the same encoder weights, texts and max_length. The memo is emptied when the outermost block ends."""
    global _depth
    with _lock:
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                _store.clear()


def active() -> bool:
    """True inside :func:`reuse_pooled_features`."""
    return _depth > 0


def key(model, texts: dict, max_length: int) -> str:
    """Memo key of ``model``'s frozen encoder (``model.backbone``'s parameters, summed per tensor in float64),
    the rows of every split in ``texts`` (split -> list of str, or of (text, pair) / image paths) and
    ``max_length``: a hex digest."""
    import torch

    h = hashlib.sha256(f"{type(model).__name__}|{max_length}".encode())
    with torch.no_grad():
        sums = [float(p.detach().double().sum()) for p in model.backbone.parameters()]
    h.update(repr(sums).encode())
    for split in sorted(texts):
        h.update(f"|{split}|{len(texts[split])}|".encode())
        for row in texts[split]:
            h.update(repr(row).encode())
            h.update(b"\x1f")
    return h.hexdigest()


def get(k: str | None):
    """The features stored under ``k`` (split -> float32 tensor [n, hidden]), or None."""
    if k is None:
        return None
    with _lock:
        if k in _store:
            _store.move_to_end(k)
            return _store[k]
    return None


def put(k: str | None, features: dict) -> None:
    """Keep ``features`` under ``k`` while a block is active (the oldest key goes past :data:`CAPACITY`)."""
    if k is None:
        return
    with _lock:
        if _depth == 0:
            return
        _store[k] = features
        while len(_store) > CAPACITY:
            _store.popitem(last=False)
