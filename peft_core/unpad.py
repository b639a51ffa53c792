"""Padding-free training steps for BERT-style encoders: the token-wise work runs on real tokens only.

Training batches stay shuffled and class-mixed (length-grouped batches made one-class batches on SMS Spam and
cost accuracy), so they are padded to their longest text; on SMS Spam about two thirds of the padded positions
are padding. In a BERT layer everything except the attention scores is token-wise (Q/K/V and output
projections, the feed-forward block, residuals, LayerNorm, dropout), so those run on the packed real tokens,
float32 [total_tokens, hidden]. Only attention needs rows again: the batch's rows are sorted by length and cut
into chunks of ``ROWS_PER_CHUNK``; Q, K and V of each chunk are scattered to [rows, heads, chunk_len, head_dim]
(padded to that chunk's longest row) for ``torch.nn.functional.scaled_dot_product_attention`` with the
key-padding mask, and its output is gathered back to packed tokens.
This is the "unpadding" of packed BERT training (Mosaic BERT; NVIDIA's FasterTransformer "remove padding"),
done here with plain PyTorch ops so autograd and peft's LoRA layers work unchanged. The layers' dropout keeps
its rate and scaling, but its masks are drawn with numpy (:func:`dropout_mask`): torch's CPU ``bernoulli_`` took a
third of a last-N forward pass.

The outputs at real positions equal the padded layer's (same ops, same order of reduction per token; tests
compare both paths); padded positions come back as zeros (they are masked out of pooling anyway). Used only
for training steps: inference and export keep the stock transformers forward.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn

#: rows per attention chunk. 30 last_n steps on SMS Spam (batch 32), best of 3 rounds: stock padded forward
#: 13.5 s, packed tokens with one padded attention call 7.7 s, chunks of 8 rows 5.5 s, of 4 5.6 s, of 2 6.5 s
ROWS_PER_CHUNK = 8
#: layer classes whose forward is BERT's (transformers marks Roberta/XLM-R layers "Copied from BertLayer")
SUPPORTED_LAYERS = {"BertLayer", "RobertaLayer", "XLMRobertaLayer", "CamembertLayer"}


def supports(layers: Sequence[nn.Module]) -> bool:
    """True when every layer is a plain BERT encoder layer this module can run padding-free (not a decoder, no
    cross-attention, no feed-forward chunking, scaled-dot-product or eager attention)."""
    if not layers:
        return False
    for layer in layers:
        cfg = getattr(getattr(getattr(layer, "attention", None), "self", None), "config", None)
        if type(layer).__name__ not in SUPPORTED_LAYERS or cfg is None:
            return False
        if cfg.is_decoder or getattr(layer, "add_cross_attention", False) or layer.chunk_size_feed_forward:
            return False
        if getattr(cfg, "_attn_implementation", "eager") not in ("sdpa", "eager"):
            return False
        if getattr(cfg, "position_embedding_type", "absolute") != "absolute":
            return False
    return True


class _Plan:
    """Where each real token goes for attention. The batch's rows are sorted by length and cut into chunks of
    ``ROWS_PER_CHUNK``; each chunk is padded only to its own longest row, so the attention scores, softmax and
    attention-probability dropout (the parts that grow with batch x seq x seq) skip most of the padding too.
    Tokens keep their absolute position embeddings from before, so regrouping rows does not change attention."""

    def __init__(self, attention_mask: torch.Tensor):
        keep = attention_mask.bool()
        b, s = keep.shape
        self.idx = keep.reshape(-1).nonzero().squeeze(1)  # flat positions of real tokens, row-major
        lengths = keep.sum(1).tolist()
        offsets = [0]
        for n in lengths:
            offsets.append(offsets[-1] + n)
        rows = sorted(range(b), key=lambda r: -lengths[r])
        self.chunks, srcs = [], []
        for c in range(0, b, ROWS_PER_CHUNK):
            part = [r for r in rows[c:c + ROWS_PER_CHUNK] if lengths[r]]
            if not part:
                continue
            width = lengths[part[0]]
            src = torch.cat([torch.arange(offsets[r], offsets[r + 1]) for r in part])
            dst = torch.cat([j * width + torch.arange(lengths[r]) for j, r in enumerate(part)])
            ragged = any(lengths[r] != width for r in part)
            mask = (torch.arange(width)[None, :] < torch.tensor([lengths[r] for r in part])[:, None]) if ragged else None
            self.chunks.append((src.to(keep.device), dst.to(keep.device), len(part), width,
                                None if mask is None else mask[:, None, None, :].to(keep.device)))
            srcs.append(src)
        self.order = torch.cat(srcs).argsort().to(keep.device)  # chunk-concatenated order -> packed order


def dropout_mask(shape: Sequence[int], p: float, rng: np.random.Generator) -> torch.Tensor:
    """Inverted-dropout multiplier: float32 tensor of ``shape`` holding 0 with probability ``p`` (in steps of
    1/65536: p = 0.1 drops with probability 6554/65536 = 0.100006) and ``1 / (1 - p)`` otherwise, as
    ``torch.nn.functional.dropout`` scales (Srivastava et al. 2014, inverted form). Drawn from ``rng`` (numpy's
    PCG64): 16 random bits per element cost a quarter of torch's CPU ``bernoulli_``, which took a third of a
    last-N training step's forward pass (torch.profiler, SMS Spam)."""
    if p >= 1.0:  # nn.Dropout(p=1) zeroes everything
        return torch.zeros(tuple(shape), dtype=torch.float32)
    bits = rng.integers(0, 1 << 16, tuple(shape), dtype=np.uint16)
    keep = bits >= np.uint16(round(p * (1 << 16)))
    return torch.from_numpy(np.multiply(keep, np.float32(1.0 / (1.0 - p)), dtype=np.float32))


class MaskDropout(nn.Dropout):
    """``nn.Dropout`` whose masks come from :func:`dropout_mask` (numpy), drawn from a generator seeded from
    torch's RNG on each call (reproducible under ``torch.manual_seed``). Same rate and inverted scaling; used for
    LoRA's adapter dropout, where torch's CPU ``bernoulli_`` took 5 % of a LoRA training run (torch.profiler, SMS
    Spam, 500 training rows)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _dropout(x, self, _torch_seeded_rng() if self.training and self.p > 0.0 else None)


def _torch_seeded_rng() -> np.random.Generator:
    """A numpy generator seeded from torch's RNG: masks stay reproducible under ``torch.manual_seed``, and every
    call draws new ones."""
    return np.random.Generator(np.random.PCG64(int(torch.randint(0, 2**62, (1,)).item())))


def _dropout(x: torch.Tensor, module: nn.Module, rng: np.random.Generator | None) -> torch.Tensor:
    """``module`` (an ``nn.Dropout``) applied to ``x`` with :func:`dropout_mask`; identity when it is off."""
    p = float(getattr(module, "p", 0.0))
    if rng is None or not module.training or p <= 0.0:
        return x
    return x * dropout_mask(x.shape, p, rng).to(x.device)


def _attention(q, k, v, mask, scale: float, p: float, rng: np.random.Generator | None) -> torch.Tensor:
    """Scaled dot-product attention, [rows, heads, w, dim] in and out; ``mask`` bool [rows, 1, 1, w] (True =
    real key) or None. Without dropout this is ``scaled_dot_product_attention``; with dropout it is the same
    math written out (softmax(q k^T * scale + mask) v, as torch's own math path computes it) so the
    attention-probability dropout can use :func:`dropout_mask`."""
    if rng is None or p <= 0.0:
        return nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
    scores = torch.matmul(q, k.transpose(-1, -2)) * scale
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    probs = torch.softmax(scores, dim=-1) * dropout_mask(scores.shape, p, rng).to(scores.device)
    return torch.matmul(probs, v)


def _layer(layer: nn.Module, h: torch.Tensor, plan: _Plan, rng: np.random.Generator | None) -> torch.Tensor:
    """One BertLayer on packed tokens ``h`` float [T, hidden] (row-major real tokens of the batch).
    ``rng``: the dropout generator of this step (None: no dropout, as in eval mode)."""
    sa = layer.attention.self
    heads, dim = sa.num_attention_heads, sa.attention_head_size
    q, k, v = sa.query(h), sa.key(h), sa.value(h)
    out = []
    p = sa.dropout.p if sa.training else 0.0
    for src, dst, rows, width, mask in plan.chunks:
        def spread(x):  # [T, heads*dim] -> [rows, heads, width, dim] for this chunk, zeros at padding
            part = x.index_select(0, src)
            return part.new_zeros(rows * width, part.shape[-1]).index_copy(0, dst, part).view(
                rows, width, heads, dim).transpose(1, 2)

        ctx = _attention(spread(q), spread(k), spread(v), mask, sa.scaling, p, rng)
        out.append(ctx.transpose(1, 2).reshape(rows * width, heads * dim).index_select(0, dst))
    ctx = torch.cat(out).index_select(0, plan.order)
    so, fo = layer.attention.output, layer.output  # BertSelfOutput / BertOutput: dense, dropout, LayerNorm(x + in)
    attn = so.LayerNorm(_dropout(so.dense(ctx), so.dropout, rng) + h)
    return fo.LayerNorm(_dropout(fo.dense(layer.intermediate(attn)), fo.dropout, rng) + attn)


def run_layers(layers: Sequence[nn.Module], hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Run ``layers`` (see :func:`supports`) on ``hidden`` float [batch, seq, hidden] with ``attention_mask``
    int/bool [batch, seq] (1 = real token) computing token-wise parts on real tokens only.
    Returns float [batch, seq, hidden], zeros at padded positions."""
    b, s, width = hidden.shape
    plan = _Plan(attention_mask)
    h = hidden.reshape(b * s, width).index_select(0, plan.idx)
    rng = _torch_seeded_rng() if any(layer.training for layer in layers) else None  # one per call: new masks
    for layer in layers:
        h = _layer(layer, h, plan, rng)
    return h.new_zeros(b * s, width).index_copy(0, plan.idx, h).view(b, s, width)


def encoder_layers(backbone: nn.Module) -> Sequence[nn.Module] | None:
    """The encoder layer list of a BERT-style backbone that :func:`encode` can run, else None."""
    layers = getattr(getattr(backbone, "encoder", None), "layer", None)
    if layers is None or not hasattr(backbone, "embeddings"):  # decoders: refused per layer by supports()
        return None
    return layers if supports(list(layers)) else None


def encode(backbone: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
           token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
    """``backbone(...).last_hidden_state`` for a backbone with :func:`encoder_layers`, padding-free:
    int64 [batch, seq] inputs -> float [batch, seq, hidden] (zeros at padded positions)."""
    kw = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
    emb = backbone.embeddings(input_ids=input_ids, **kw)
    return run_layers(list(backbone.encoder.layer), emb, attention_mask)
