"""What the training loop feeds the trainable part of the model: raw texts, or cached frozen-prefix outputs.

When the first K encoder layers (and the embeddings) are frozen, their outputs never change, so they are
computed once, no grad, in length-sorted batches, and every epoch runs only the trainable rest:

* ``FeatureFeed`` — whole encoder frozen (linear probe): caches pooled features, float32 [n, hidden].
* ``PrefixFeed``  — first K of L layers frozen (last-N): caches the token states after layer K, unpadded and
  concatenated (float32 [total_tokens, hidden], RAM or a memory-mapped temp file past a budget); each step
  re-pads one batch and runs layers K..L-1, pooling and the head.
* ``ImagePrefixFeed`` — first K blocks of an image backbone that can resume from a block (``forward_from``,
  e.g. the bundled EfficientNet-Lite) frozen: caches their output feature maps.
* ``TextFeed``    — nothing cacheable (LoRA in every layer, or the cache switched off): tokenizes per batch.

All three give the same model and numbers as recomputing the frozen part each step (dropout in frozen layers is
off in both; padded positions are masked out of attention and pooling). Under several processes each one
computes a shard of the cache and ``gather_object`` gives every process the whole of it.

Computing a cache is the run's "encoding" phase: a feed that caches is given an unstarted
:class:`~peft_core.callbacks.Phase` and reports the rows of every split it encodes through it, once per batch;
the phase raises ``StopRequested`` there when the run is told to stop. ``all_logits`` takes a ``tick(rows)``
called once per batch, for the same stop checks in the validation pass.
"""
from __future__ import annotations

import copy
import os
import tempfile
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from . import unpad
from .callbacks import Phase
from .inference import batch_inputs, is_image_processor, sorted_batches, token_lengths

CACHE_RAM_BYTES = int(float(os.environ.get("PEFT_CACHE_RAM_MB", "2048")) * 2**20)


def _noop(rows: int) -> None:
    """A ``tick`` that does nothing."""


@torch.no_grad()
def map_tracked(fn: Callable[[dict], torch.Tensor], tokenizer, texts: Sequence, max_length: int, device,
                tick: Callable[[int], None] = _noop, batch_size: int = 64) -> torch.Tensor:
    """``inference.map_sorted`` (no grad, length-sorted batches, rows back in input order, on the CPU) that calls
    ``tick(rows in the batch)`` after each batch: progress reports and stop checks (a ``Phase.advance`` raises
    ``StopRequested`` there). Returns ``fn``'s outputs stacked: [n, ...]. Raises ValueError for no texts."""
    texts = list(texts)
    if not texts:
        raise ValueError("no texts to run")
    out: list = [None] * len(texts)
    for idx in sorted_batches(token_lengths(tokenizer, texts, max_length), batch_size):
        inputs = {k: v.to(device) for k, v in batch_inputs(tokenizer, [texts[i] for i in idx], max_length).items()}
        res = fn(inputs).float().cpu()
        for j, i in enumerate(idx):
            out[i] = res[j]
        tick(len(idx))
    return torch.stack(out)


def _encoding(phase: Phase | None, texts: dict, acc) -> Callable[[int], None]:
    """Start ``phase`` over every row of ``texts`` and return a ``tick(rows)`` for this process's batches (rows
    counted once per process, so the main process's count reaches the total when all shards are done)."""
    if phase is None:
        return _noop
    phase.total = sum(len(rows) for rows in texts.values())
    phase.start()
    return lambda rows: phase.advance(rows * acc.num_processes)


def _layer_stack(backbone: nn.Module) -> tuple[str, nn.ModuleList] | None:
    lists = [(n, m) for n, m in backbone.named_modules() if isinstance(m, nn.ModuleList)]
    return max(lists, key=lambda nm: len(nm[1])) if lists else None


def first_trainable_layer(layers: Sequence[nn.Module]) -> int:
    """Index of the first layer with a trainable parameter (``len(layers)`` when all are frozen)."""
    return next((i for i, layer in enumerate(layers) if any(p.requires_grad for p in layer.parameters())),
                len(layers))


def frozen_prefix_depth(backbone: nn.Module) -> int:
    """Number of leading encoder layers with no trainable parameter (== layer count if all frozen); 0 if the
    embeddings train or no layer stack is found."""
    found = _layer_stack(backbone)
    if found is None:
        return 0
    _, layers = found
    emb_trainable = any(p.requires_grad for n, p in backbone.named_parameters() if "embeddings" in n)
    if emb_trainable:
        return 0
    return first_trainable_layer(layers)


class _Passthrough(nn.Module):
    """Stands in for the embeddings module: returns the cached states given as ``inputs_embeds``."""

    def forward(self, input_ids=None, inputs_embeds=None, **_):
        return inputs_embeds


def _view(backbone: nn.Module, layers_path: str, layers: Sequence[nn.Module], passthrough: bool) -> nn.Module:
    """A shallow copy of ``backbone`` sharing its parameters, with the layer list replaced by ``layers`` (and the
    embeddings by a passthrough)."""
    top = copy.copy(backbone)
    top._modules = dict(backbone._modules)
    parent, parts = top, layers_path.split(".")
    for name in parts[:-1]:
        child = copy.copy(parent._modules[name])
        child._modules = dict(child._modules)
        parent._modules[name] = child
        parent = child
    parent._modules[parts[-1]] = nn.ModuleList(layers)
    if passthrough:
        top._modules["embeddings"] = _Passthrough()
    return top


class _Suffix(nn.Module):
    """Trainable rest of a TextClassifier: layers K..L-1, pooling, head. forward(states [b,s,h], mask [b,s])."""

    def __init__(self, model: nn.Module, suffix_backbone: nn.Module, layers: Sequence[nn.Module]):
        super().__init__()
        self.suffix, self.head = suffix_backbone, model.head
        self._pool = model.pool
        self._layers = list(layers)  # a plain list: the same modules as in self.suffix, not registered twice
        self._unpadded = unpad.supports(self._layers) and getattr(model, "unpadded_training", False)

    def forward(self, states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if self._unpadded and self.head.training and torch.is_grad_enabled():  # training steps: real tokens only
            hidden = unpad.run_layers(self._layers, states, attention_mask)
        else:
            hidden = self.suffix(inputs_embeds=states, attention_mask=attention_mask).last_hidden_state
        return self.head(self._pool(hidden, attention_mask))


def sharded(acc, fn, n: int) -> list:
    """Run ``fn(indices) -> list`` on this process's contiguous shard of range(n); every process gets all n."""
    from accelerate.utils import gather_object

    bounds = np.linspace(0, n, acc.num_processes + 1).astype(int)
    mine = fn(np.arange(bounds[acc.process_index], bounds[acc.process_index + 1]))
    return gather_object(mine) if acc.num_processes > 1 else mine


class TextFeed:
    """No cache: the whole model runs each step on tokenized texts."""

    kind = "none"
    #: intra-op threads for the training steps on this feed (None: torch's setting, every core)
    step_threads: int | None = None

    def __init__(self, model, tokenizer, texts: dict, max_length: int, acc):
        self.module, self.tok, self.texts, self.max_length, self.acc = model, tokenizer, texts, max_length, acc

    def batch(self, split: str, idx: Sequence[int]) -> dict:
        inputs = batch_inputs(self.tok, [self.texts[split][i] for i in idx], self.max_length)
        return {k: v.to(self.acc.device) for k, v in inputs.items()}

    @torch.no_grad()
    def all_logits(self, module, split: str, tick: Callable[[int], None] = _noop) -> torch.Tensor:
        """Logits of ``module`` for every row of ``split``: float32 [n, num_labels] on the CPU; ``tick(rows)``
        after each batch."""
        return map_tracked(lambda b: module(**b), self.tok, self.texts[split], self.max_length, self.acc.device,
                           tick)


class FeatureFeed(TextFeed):
    """Whole encoder frozen: pooled features cached once; the head is the trainable module."""

    kind = "pooled features"
    #: a step is a [batch, hidden] x [hidden, num_labels] matmul: far too small to split across cores, and a split
    #: one waits on every busy core (a 77-class head on 10k cached rows, batch 32, under load ~5.7 on 2 cores:
    #: 39.3 ms per step on 2 threads, 4.6 ms on 1). L-BFGS's full-batch product runs on one thread too: between
    #: its products SciPy's L-BFGS-B and numpy run, and with 2 threads the iteration took 1.6-1.8x longer than on 1
    #: (idle, 150 classes, 9,000 rows: bench/probe.py 10.8 vs 5.7 s) though the product alone is 1.8x faster
    step_threads = 1

    def __init__(self, model, tokenizer, texts: dict, max_length: int, acc, phase: Phase | None = None):
        super().__init__(model.head, tokenizer, texts, max_length, acc)
        model.eval()
        from . import feature_memo  # a search's later linear-probe runs reuse the first one's features

        memo = feature_memo.key(model, texts, max_length) if feature_memo.active() and acc.num_processes == 1 \
            else None
        tick = _encoding(phase, texts, acc)
        self.features = feature_memo.get(memo) or {}
        if self.features:
            tick(sum(len(rows) for rows in texts.values()))
            if phase is not None:
                phase.finish()
            return
        for s, rows in texts.items():
            def run(ix, rows=rows):  # float32 [hidden] per row of this process's shard
                part = [rows[i] for i in ix]
                return list(map_tracked(lambda b: model.features(**b), tokenizer, part, max_length, acc.device,
                                        tick)) if part else []
            self.features[s] = torch.stack(sharded(acc, run, len(rows)))  # [n, hidden]
        feature_memo.put(memo, self.features)
        if phase is not None:
            phase.finish()

    def batch(self, split: str, idx: Sequence[int]) -> dict:
        return {"input": self.features[split][idx].to(self.acc.device)}

    @torch.no_grad()
    def all_logits(self, module, split: str, tick: Callable[[int], None] = _noop) -> torch.Tensor:
        out = module(self.features[split].to(self.acc.device)).float().cpu()  # one call: the head is tiny
        tick(len(out))
        return out


class _TokenStates:
    """Unpadded token states of n texts: float32 [total_tokens, hidden] in RAM, or memory-mapped past the budget."""

    def __init__(self, lengths: np.ndarray, hidden: int):
        self.offsets = np.concatenate([[0], np.cumsum(lengths)])
        shape = (int(self.offsets[-1]), hidden)
        self.spilled = shape[0] * hidden * 4 > CACHE_RAM_BYTES
        if self.spilled:
            self._file = tempfile.NamedTemporaryFile(prefix="peft_prefix_", suffix=".f32")
            self.data = np.memmap(self._file.name, dtype=np.float32, mode="w+", shape=shape)
        else:
            self.data = np.empty(shape, dtype=np.float32)

    def put(self, i: int, states: np.ndarray) -> None:
        self.data[self.offsets[i]:self.offsets[i + 1]] = states

    def get(self, i: int) -> torch.Tensor:
        return torch.from_numpy(np.asarray(self.data[self.offsets[i]:self.offsets[i + 1]]))


class PrefixFeed(TextFeed):
    """First K layers frozen: token states after layer K cached; layers K.. + head form the trainable module."""

    kind = "frozen-prefix token states"

    def __init__(self, model, tokenizer, texts: dict, max_length: int, acc, depth: int, phase: Phase | None = None):
        path, layers = _layer_stack(model.backbone)
        prefix = _view(model.backbone, path, list(layers)[:depth], passthrough=False).eval()
        rest = list(layers)[depth:]
        super().__init__(_Suffix(model, _view(model.backbone, path, rest, True), rest), tokenizer, texts, max_length,
                         acc)
        hidden = model.backbone.config.hidden_size
        tick = _encoding(phase, texts, acc)
        self.states = {}
        for s, rows in texts.items():
            lengths = token_lengths(tokenizer, rows, max_length)
            store = _TokenStates(lengths, hidden)

            def run(ix, rows=rows, lengths=lengths, store=store):
                # one process: each batch goes straight into the store, so the states never sit in RAM all at once
                # (past the budget the store is a memory-mapped file); several: gathered, every process keeps all
                out = []
                for b in sorted_batches(lengths[ix], 64):
                    inputs = {k: v.to(acc.device) for k, v in batch_inputs(tokenizer, [rows[ix[j]] for j in b],
                                                                             max_length).items()}
                    with torch.no_grad():
                        h = prefix(**inputs).last_hidden_state.float().cpu().numpy()
                    for r, j in enumerate(b):
                        if acc.num_processes == 1:
                            store.put(int(ix[j]), h[r, :lengths[ix[j]]])
                        else:
                            out.append((int(ix[j]), h[r, :lengths[ix[j]]].copy()))
                    tick(len(b))
                return out

            for i, st in sharded(acc, run, len(rows)):
                store.put(i, st)
            self.states[s] = store
        if phase is not None:
            phase.finish()

    def batch(self, split: str, idx: Sequence[int]) -> dict:
        seqs = [self.states[split].get(i) for i in idx]
        states = nn.utils.rnn.pad_sequence(seqs, batch_first=True)  # [b, s_max, h], zeros past each length
        lengths = torch.tensor([len(x) for x in seqs])
        mask = (torch.arange(states.shape[1])[None, :] < lengths[:, None]).long()  # [b, s_max]
        return {"states": states.to(self.acc.device), "attention_mask": mask.to(self.acc.device)}

    @torch.no_grad()
    def all_logits(self, module, split: str, tick: Callable[[int], None] = _noop) -> torch.Tensor:
        lengths = np.diff(self.states[split].offsets)
        out: list = [None] * len(lengths)
        for b in sorted_batches(lengths, 64):
            for i, row in zip(b, module(**self.batch(split, b.tolist())).float().cpu()):
                out[i] = row
            tick(len(b))
        return torch.stack(out)


class _ImageSuffix(nn.Module):
    """Trainable rest of an ImageClassifier whose backbone has ``forward_from``: blocks K.., pooling, head."""

    def __init__(self, model: nn.Module, start: int):
        super().__init__()
        self.model, self.start = model, start

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        return self.model.head(self.model.pooled(self.model.backbone.forward_from(states, self.start)))


class ImagePrefixFeed(TextFeed):
    """First K blocks of an image backbone frozen: their output feature maps (float32 [n, C, h, w], in RAM;
    falls back to recomputing when over ``PEFT_CACHE_RAM_MB``) are cached; blocks K.. + head train."""

    kind = "frozen-prefix feature maps"

    def __init__(self, model, processor, images: dict, max_length: int, acc, depth: int,
                 phase: Phase | None = None):
        super().__init__(_ImageSuffix(model, depth), processor, images, max_length, acc)
        backbone = model.backbone
        model.eval()
        tick = _encoding(phase, images, acc)
        self.states = {}
        for s, rows in images.items():
            def run(ix, rows=rows):  # feature maps of this process's shard, in order
                out = []
                for j in range(0, len(ix), 32):
                    px = processor([rows[i] for i in ix[j:j + 32]])["pixel_values"].to(acc.device)
                    with torch.no_grad():
                        out += list(backbone.forward_blocks(px, depth).float().cpu())
                    tick(len(px))
                return out
            self.states[s] = torch.stack(sharded(acc, run, len(rows)))
        if phase is not None:
            phase.finish()

    @staticmethod
    def bytes_needed(model, processor, n: int, depth: int) -> int:
        with torch.no_grad():
            probe = model.backbone.forward_blocks(torch.zeros(1, 3, *processor.size), depth)
        return probe.numel() * 4 * n

    def batch(self, split: str, idx: Sequence[int]) -> dict:
        return {"states": self.states[split][idx].to(self.acc.device)}

    @torch.no_grad()
    def all_logits(self, module, split: str, tick: Callable[[int], None] = _noop) -> torch.Tensor:
        rows, out = self.states[split], []
        for i in range(0, len(rows), 64):
            out.append(module(rows[i:i + 64].to(self.acc.device)).float().cpu())
            tick(len(out[-1]))
        return torch.cat(out)


def make_feed(model, tokenizer, texts: dict, max_length: int, acc, use_cache: bool,
              phase: Phase | None = None) -> TextFeed:
    """Pick the cheapest exact feed for the model's frozen prefix (see module doc). A feed that caches reports
    its encoding through ``phase`` (an unstarted "encoding" Phase) and stops there with ``StopRequested``."""
    depth = frozen_prefix_depth(model.backbone) if use_cache and not hasattr(model, "peft_config") else 0
    found = _layer_stack(model.backbone)
    if depth and found and depth == len(found[1]):
        return FeatureFeed(model, tokenizer, texts, max_length, acc, phase)
    if depth and not is_image_processor(tokenizer):  # token-state cache: text encoders only
        return PrefixFeed(model, tokenizer, texts, max_length, acc, depth, phase)
    if depth and hasattr(model.backbone, "forward_from") and ImagePrefixFeed.bytes_needed(
            model, tokenizer, sum(map(len, texts.values())), depth) <= CACHE_RAM_BYTES:
        return ImagePrefixFeed(model, tokenizer, texts, max_length, acc, depth, phase)
    return TextFeed(model, tokenizer, texts, max_length, acc)
