"""Training: AdamW with separate head / encoder learning rates, linear warmup-decay schedule, early stopping.

The loop runs under ``accelerate`` (one process on a CPU or the CUDA GPU when present; several under
``accelerate launch``). Frozen leading layers are computed once and cached (``peft_core.feeds``), so each epoch
runs only the trainable part: the same model and numbers as recomputing them, at a fraction of the cost.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Sequence

import numpy as np
import torch
from torch import nn

from .callbacks import Callback, Control, Phase, ProgressEvent, StopRequested
from .data import split_inputs
from .checks import check_number
from .errors import ConfigError, NonFiniteError
from .feeds import FeatureFeed, _layer_stack, first_trainable_layer, make_feed
from .full_batch import BestEpochs, lbfgs_fit
from .precision import autocast, check_precision
from .precision import resolve as resolve_precision
from .tasks import TaskSpec, get_task


#: training solvers: mini-batch AdamW (any trainable part) and full-batch L-BFGS (a head on cached features)
SOLVERS = ("adamw", "lbfgs")


def max_epochs() -> int:
    """Most epochs a run may ask for: ``PEFT_MAX_EPOCHS`` (an operator limit for hosted apps), default 1000."""
    import os

    try:
        return max(1, int(os.environ.get("PEFT_MAX_EPOCHS", "1000")))
    except ValueError:
        raise ConfigError(f"PEFT_MAX_EPOCHS={os.environ['PEFT_MAX_EPOCHS']!r} is not a whole number") from None


@dataclass
class TrainConfig:
    """Hyper-parameters. ``None`` means "the method's default" (``Method.train_defaults``).

    Units: ``learning_rate`` / ``head_learning_rate`` are AdamW step sizes for encoder (or adapter) parameters
    and for the head; ``warmup_ratio`` is the share of optimizer steps with linearly rising rate;
    ``max_length`` is in tokens (a text pair shares it); ``early_stopping_patience`` in epochs without a better
    validation score or loss (0 disables); ``dropout`` is the head's dropout probability; ``probe_epochs``: when
    the method trains more than the head, first fit the head alone for up to this many epochs on cached features
    (LP-FT; 0: off); ``class_weights``: weight the loss against class imbalance (single-label: "balanced" class weights;
    multi-label: per-label ``pos_weight``; see ``peft_core.tasks``), off by default; ``solver``: "adamw" (mini-batch
    AdamW, every method) or "lbfgs" (full-batch L-BFGS of the head alone on cached features, the linear probe's
    default; there an epoch is one L-BFGS iteration and ``weight_decay`` is the L2 term, C = 1 / weight_decay,
    see ``peft_core.full_batch``); ``precision``: "auto", "fp32" or "bf16", the compute precision of the trainable
    part's forward in AdamW steps (``peft_core.precision``; "auto": bf16 on a CPU with native bf16, else fp32).
    """

    epochs: int | None = None
    batch_size: int | None = None
    learning_rate: float | None = None
    head_learning_rate: float | None = None
    weight_decay: float | None = None
    warmup_ratio: float = 0.1
    max_length: int = 128
    dropout: float = 0.1
    early_stopping_patience: int | None = None
    seed: int = 42
    feature_cache: bool = True
    probe_epochs: int | None = None
    class_weights: bool = False
    solver: str | None = None
    precision: str = "auto"

    def __post_init__(self) -> None:
        checks = {"epochs": (1, max_epochs()), "batch_size": (1, 4096), "learning_rate": (0, 1), "head_learning_rate":
                  (1e-8, 1), "weight_decay": (0, 1), "warmup_ratio": (0, 0.9), "max_length": (8, 8192),
                  "dropout": (0, 0.95), "early_stopping_patience": (0, 1000), "seed": (0, 2**32 - 1),
                  "probe_epochs": (0, 1000)}
        whole = ("epochs", "batch_size", "max_length", "early_stopping_patience", "seed", "probe_epochs")
        for name, (lo, hi) in checks.items():
            if getattr(self, name) is not None:  # finite, in range; NaN / inf refused with the field's name
                setattr(self, name, check_number(name, getattr(self, name), lo, hi, whole=name in whole))
        if self.solver is not None and self.solver not in SOLVERS:
            raise ConfigError(f"solver {self.solver!r} is unknown; choose one of {', '.join(SOLVERS)}")
        check_precision(self.precision)

    def with_defaults(self, defaults: dict) -> "TrainConfig":
        """A copy where every ``None`` field takes the value from ``defaults``."""
        return replace(self, **{f.name: defaults[f.name] for f in fields(self)
                                if getattr(self, f.name) is None and f.name in defaults})

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainResult:
    """What training did. ``history``: one dict per epoch (epoch, train_loss, val_loss, val_score and the task
    kind's named validation metrics, e.g. val_accuracy and val_macro_f1); ``score_name``: what val_score is;
    ``step_losses``: training loss per optimizer step; ``best_epoch``: 1-based epoch whose
    weights were kept (0 if none finished); ``cancelled_in``: the phase the stop flag stopped ("encoding",
    "training"; "" when not cancelled)."""

    history: list[dict] = field(default_factory=list)
    step_losses: list[float] = field(default_factory=list)
    best_epoch: int = 0
    stopped_early: bool = False
    cancelled: bool = False
    cancelled_in: str = ""
    seconds: float = 0.0
    used_feature_cache: bool = False
    cache: str = "none"
    probe: dict = field(default_factory=dict)  # the linear-probe warm start, when one ran
    score_name: str = "macro-F1"
    precision: str = "fp32"  # what the training steps' forward ran in (``TrainConfig.precision`` resolved)

    def to_dict(self) -> dict:
        return asdict(self)


def set_train_mode(model: nn.Module) -> None:
    """``model.train()``, then eval mode for the frozen prefix of the encoder (embeddings and the leading layers
    with no trainable parameter; attention-probability dropout follows the module's own mode), so frozen
    features are deterministic and cacheable. Layers from the first trainable one on stay in train mode, except
    batch-norm layers, which always use their pretrained running statistics (the usual practice when fine-tuning
    CNNs on small batches; their scale and shift still train where the method trains them)."""
    model.train()
    backbone = model.backbone  # PeftModel forwards attribute access to the wrapped TextClassifier
    found = _layer_stack(backbone)
    layers = found[1] if found else None
    live: set[int] = set()
    if layers is not None:
        k = first_trainable_layer(layers)
        for layer in list(layers)[k:]:
            live.update(id(m) for m in layer.modules())
    for m in backbone.modules():
        if id(m) not in live and not any(p.requires_grad for p in m.parameters()):
            m.eval()
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()  # keep the pretrained running statistics: small fine-tuning batches would overwrite them


def make_accelerator():
    """The run's ``accelerate.Accelerator``: the CUDA GPU(s) when present, else the CPU. Under ``accelerate
    launch --multi_gpu`` / ``torchrun`` on CPU-only machines it joins the process group with the gloo backend
    (accelerate picks MULTI_CPU only when asked for the CPU explicitly)."""
    from accelerate import Accelerator

    return Accelerator(cpu=not torch.cuda.is_available())


def _param_groups(model: nn.Module, cfg: TrainConfig) -> list[dict]:
    """Four AdamW groups: head / encoder x with / without weight decay (no decay on biases and norms)."""
    groups: dict[tuple[bool, bool], list] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            key = (".head." in f".{name}", p.ndim < 2)
            groups.setdefault(key, []).append(p)
    return [{"params": ps, "lr": cfg.head_learning_rate if is_head else cfg.learning_rate,
             "weight_decay": 0.0 if no_decay else cfg.weight_decay} for (is_head, no_decay), ps in groups.items()]


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW over :func:`_param_groups`, with PyTorch's fused kernel where the parameters live on a CPU or CUDA
    device (one kernel per group instead of a loop of small ops; transformers' Trainer defaults to the same
    ``adamw_torch_fused``). Same update rule either way."""
    groups = _param_groups(model, cfg)
    fused = all(p.device.type in ("cpu", "cuda") and p.dtype in (torch.float32, torch.float16, torch.bfloat16)
                for g in groups for p in g["params"])
    return torch.optim.AdamW(groups, fused=fused)


def _stop_if_non_finite(acc, value: float, what: str, where: str, cfg: TrainConfig) -> None:
    """Raise NonFiniteError when ``value`` (a loss) is NaN or infinite on this process or, under several
    processes, on any of them (all stop at the same step instead of waiting for each other)."""
    bad = not np.isfinite(value)
    if acc.num_processes > 1:
        flag = acc.reduce(torch.tensor([float(bad)], device=acc.device), reduction="sum")
        bad = bool(flag.item() > 0)
    if bad:
        shown = ("NaN" if np.isnan(value) else "infinite" if np.isinf(value)
                 else "NaN or infinite on another process")
        raise NonFiniteError(
            f"the {what} became {shown} at {where}, so training stopped and no model was kept: lower the "
            f"learning rate (encoder/adapters {cfg.learning_rate:g}, head {cfg.head_learning_rate:g}) or the "
            "method's scaling (e.g. LoRA alpha), then train again")


def train(model: nn.Module, tokenizer, splits, cfg: TrainConfig, callbacks: Sequence[Callback] = (),
          control: Control | None = None, accelerator=None, task: TaskSpec | None = None) -> TrainResult:
    """Train the trainable parameters of ``model`` on ``splits["train"]`` for ``task`` (default: single-label
    classification): its kind gives the targets, the loss and the validation score (``peft_core.tasks``; macro-F1
    for single-label, micro-F1 for multi-label, R² for regression). Early stopping: after
    ``early_stopping_patience`` epochs in which neither the validation score nor the validation loss improved; the
    weights of the epoch with the best validation score (ties: lower loss) are restored at the end.
    ``cfg`` must have its method defaults filled in (``TrainConfig.with_defaults``).
    Under several processes (``accelerate launch``) batches are sharded and gradients averaged (DDP); every
    process validates on the whole validation split, so all take the same early-stopping decisions.

    Progress: "phase" events for "encoding" (rows of the train and validation splits whose frozen features are
    cached, once per batch; only when something is cached, and again for the LP-FT probe's features) and
    "training" (optimizer steps; at most one per second), besides the "start" / "step" / "epoch" / "end" events.
    Stop flag: checked after every step and between the batches of the encoding, the LP-FT probe and every
    validation pass; a stopped run returns at once with ``cancelled`` set (the best finished epoch restored;
    ``history`` empty and ``best_epoch`` 0 when none finished).

    Raises:
        ConfigError: a ``None`` hyper-parameter, or no trainable parameter.
    """
    from accelerate.utils import set_seed

    if any(v is None for v in asdict(cfg).values()):
        raise ConfigError("TrainConfig has unset fields; call with_defaults(method.train_defaults) first")
    if not any(p.requires_grad for p in model.parameters()):
        raise ConfigError("the model has no trainable parameters")
    set_seed(cfg.seed)
    acc = accelerator or make_accelerator()
    model.to(acc.device)
    control = control or Control()
    emit = (lambda ev: [cb(ev) for cb in callbacks]) if acc.is_main_process else (lambda ev: None)
    t0 = time.perf_counter()
    texts = {s: split_inputs(splits[s]) for s in ("train", "validation")}
    kind = get_task(task or "single_label")
    if task is None:  # plain class ids: as many classes as the largest id says
        k = 1 + max(max(splits[s]["label"]) for s in texts)
        task = TaskSpec("single_label", "text", "label", {i: str(i) for i in range(max(k, 2))})
    spec = task
    labels = {s: kind.targets(spec, splits[s]["label"]) for s in texts}
    objective = kind.objective(spec, labels["train"], cfg.class_weights)
    res = TrainResult(score_name=objective.score_name)
    if objective.output_bias is not None:
        _set_output_bias(model, objective.output_bias)
    try:
        if cfg.probe_epochs and _trains_beyond_head(model):
            res.probe = _linear_probe(model, tokenizer, texts, labels, objective, cfg, acc, emit, control)
            if control.should_stop:  # stopped during the probe: the run ends here
                raise StopRequested("training")  # the probe is the first training
        feed = make_feed(model, tokenizer, texts, cfg.max_length, acc, cfg.feature_cache,
                         Phase(emit, "encoding", 0, control))
    except StopRequested as e:
        res.cancelled, res.cancelled_in = True, e.phase
    if not res.cancelled:
        res.used_feature_cache, res.cache = feed.kind != "none", feed.kind
        with intra_op_threads(feed.step_threads):
            _solve(model, feed, labels, objective, cfg, acc, emit, control, res, t0)
    model.eval()
    res.seconds = time.perf_counter() - t0
    emit(ProgressEvent("end", len(res.step_losses), len(res.step_losses),
                       message="cancelled" if res.cancelled else "finished", elapsed_s=res.seconds))
    return res


@contextlib.contextmanager
def intra_op_threads(n: int | None):
    """Run the block with ``torch.set_num_threads(n)`` (``None``: unchanged), restoring the previous count."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if n:
            torch.set_num_threads(before)


def _solve(model, feed, labels, objective, cfg: TrainConfig, acc, emit, control, res: TrainResult,
           t0: float) -> None:
    """Run ``cfg.solver`` on ``feed``: L-BFGS where only the head trains on cached pooled features (else it says
    so and uses AdamW), mini-batch AdamW otherwise."""
    if cfg.solver == "lbfgs" and feed.kind == FeatureFeed.kind and not _trains_beyond_head(model):
        lbfgs_fit(model, feed, labels, objective, cfg, emit, control, res, t0,
                  lambda value, what, where: _stop_if_non_finite(acc, value, what, where, cfg),
                  f"; {acc.num_processes} process(es) on {acc.device}")
        return
    if cfg.solver == "lbfgs":
        emit(ProgressEvent("message", message="L-BFGS needs the head alone on cached pooled features (here: "
                           f"cache {feed.kind}); training with AdamW mini-batches instead"))
    _fit(model, feed, labels, objective, cfg, acc, emit, control, res, t0)


def _set_output_bias(model: nn.Module, bias: list[float]) -> None:
    """Sets the bias of every output ``nn.Linear`` under the head (with LoRA the head is a peft wrapper holding
    a trained copy beside the original) to ``bias`` (float, one per output)."""
    head = getattr(model, "head", None)
    for m in ([] if head is None else head.modules()):
        if isinstance(m, nn.Linear) and m.bias is not None and m.out_features == len(bias):
            with torch.no_grad():
                m.bias.copy_(torch.as_tensor(bias, dtype=m.bias.dtype))


def _trains_beyond_head(model: nn.Module) -> bool:
    return any(p.requires_grad and ".head." not in f".{n}" for n, p in model.named_parameters())


def _linear_probe(model, tokenizer, texts, labels, objective, cfg: TrainConfig, acc, emit, control) -> dict:
    """LP-FT warm start (Kumar et al., "Fine-Tuning can Distort Pretrained Features", ICLR 2022): train the
    head alone on cached pooled features of the still-unchanged encoder (LoRA starts as an exact no-op, last-N
    layers are untouched), with the linear probe's defaults, before the encoder part trains. A trained head
    instead of a random one keeps large random-head gradients out of the pretrained layers. Every process fits
    the same head on the same gathered features (no gradient sync needed). Returns a summary dict."""
    from .methods.head import TRAIN_DEFAULTS as PROBE

    frozen = [p for n, p in model.named_parameters() if p.requires_grad and ".head." not in f".{n}"]
    for p in frozen:
        p.requires_grad_(False)
    try:
        feed = FeatureFeed(model, tokenizer, texts, cfg.max_length, acc, Phase(emit, "encoding", 0, control))
        pcfg = replace(cfg, epochs=cfg.probe_epochs, head_learning_rate=PROBE["head_learning_rate"],
                       batch_size=PROBE["batch_size"], early_stopping_patience=PROBE["early_stopping_patience"],
                       solver=PROBE["solver"], weight_decay=PROBE["weight_decay"])
        emit(ProgressEvent("message", message=f"linear probe warm start: head only, up to {pcfg.epochs} epochs "
                           "on cached features"))
        part = TrainResult()
        with intra_op_threads(feed.step_threads):
            _solve(model, feed, labels, objective, pcfg, _Local(acc.device), lambda ev: None, control, part,
                   time.perf_counter())
    finally:
        for p in frozen:
            p.requires_grad_(True)
    best = part.history[part.best_epoch - 1] if part.best_epoch else {}
    emit(ProgressEvent("message", message=f"linear probe warm start done: {len(part.history)} epochs, "
                       f"validation {objective.score_name} {best.get('val_score', float('nan')):.4f}"))
    return {"epochs": len(part.history), "best_epoch": part.best_epoch, "validation": best}


class _Local:
    """The few ``Accelerator`` members ``_fit`` uses, for a single-process fit on every process."""

    num_processes, is_main_process = 1, True

    def __init__(self, device):
        self.device = device

    def prepare(self, *objs):
        return objs

    def backward(self, loss):
        loss.backward()

    def unwrap_model(self, module):
        return module


def _fit(model, feed, labels, objective, cfg: TrainConfig, acc, emit, control, res: TrainResult,
         t0: float) -> None:
    """The epoch loop on ``feed``; fills ``res`` and restores the best epoch's weights (see :func:`train`)."""
    from transformers import get_linear_schedule_with_warmup

    loader = torch.utils.data.DataLoader(np.arange(len(labels["train"])), batch_size=cfg.batch_size, shuffle=True,
                                         generator=torch.Generator().manual_seed(cfg.seed))
    optimizer = make_optimizer(model, cfg)
    total = cfg.epochs * len(loader)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * total), total)
    module, optimizer, loader, scheduler = acc.prepare(feed.module, optimizer, loader, scheduler)
    total = cfg.epochs * len(loader)  # per process, after sharding
    keeper, step = BestEpochs(model, cfg.early_stopping_patience), 0
    # the head alone trains in fp32: its matmul is too small for bf16 to pay, and the probe's results stay exact
    res.precision = resolve_precision(cfg.precision, acc.device) if _trains_beyond_head(model) else "fp32"
    emit(ProgressEvent("start", 0, total, message=f"{len(labels['train'])} training rows; cache: {feed.kind}; "
                       f"{acc.num_processes} process(es) on {acc.device}; {res.precision}",
                       elapsed_s=time.perf_counter() - t0))
    phase = Phase(emit, "training", total, control, every_s=1.0)
    try:  # phase.advance / phase.check raise StopRequested when the stop flag is set
        phase.start()
        for epoch in range(1, cfg.epochs + 1):
            set_train_mode(model)
            losses = []
            for idx in loader:
                with autocast(res.precision, acc.device):
                    logits = module(**feed.batch("train", idx.tolist()))
                loss = objective.loss(logits.float(), labels["train"][idx].to(acc.device))
                acc.backward(loss)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                losses.append(loss.item())
                res.step_losses.append(losses[-1])
                _stop_if_non_finite(acc, losses[-1], "training loss", f"step {len(losses)} of epoch {epoch}", cfg)
                emit(ProgressEvent("step", step, total, epoch - 1 + len(losses) / len(loader), losses[-1],
                                   elapsed_s=time.perf_counter() - t0))
                phase.advance()
            model.eval()
            val_logits = feed.all_logits(acc.unwrap_model(module), "validation", lambda rows: phase.check())
            metrics = objective.metrics(val_logits, labels["validation"])
            _stop_if_non_finite(acc, metrics["val_loss"], "validation loss", f"the end of epoch {epoch}", cfg)
            res.history.append({"epoch": epoch, "train_loss": float(np.mean(losses)), **metrics})
            emit(ProgressEvent("epoch", step, total, epoch, metrics=metrics, elapsed_s=time.perf_counter() - t0))
            if keeper.update(epoch, metrics):
                res.stopped_early = True
                break
        phase.finish(step)  # early stopping: fewer steps than planned
    except StopRequested as e:
        res.cancelled, res.cancelled_in = True, e.phase
    res.best_epoch = keeper.epoch
    keeper.restore()
