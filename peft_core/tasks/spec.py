"""TaskSpec: what the model must predict and from which inputs, inferred from the data (or chosen by the user).

A task has a *kind* (a key of ``peft_core.tasks.TASKS``: ``single_label``, ``multi_label``, ``regression``) and an
*input kind* (``text``, ``text_pair`` or ``image``). The spec carries the label mapping fields of transformers
configs (``num_labels``, ``id2label``, ``label2id``, ``problem_type``), and what turns logits into predictions:
multi-label decision thresholds, the regression target's mean and standard deviation.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..errors import ConfigError

KIND_NAMES = ("single_label", "multi_label", "regression")
MODALITIES = ("text", "image")
#: task kinds of runs saved before task kinds were registered
_OLD_KINDS = {"text-classification": ("single_label", "text"), "image-classification": ("single_label", "image")}
#: transformers' ``problem_type`` of each kind (``PretrainedConfig.problem_type``)
PROBLEM_TYPES = {"single_label": "single_label_classification", "multi_label": "multi_label_classification",
                 "regression": "regression"}


@dataclass
class TaskSpec:
    """The prediction task.

    Attributes:
        kind: one of :data:`KIND_NAMES` (``"single-label"`` spellings with a hyphen are accepted).
        text_column / label_column: column names in the user's file (``label_column`` names every one-hot column,
            comma-joined, for one-hot multi-label files).
        id2label: output id (int, 0..num_labels-1) -> label name; regression: ``{0: target column}``.
        modality: "text" (one text, or a pair when ``text_pair_column`` is set) or "image".
        text_pair_column: the second text column of pair tasks (NLI, similarity), None otherwise.
        thresholds: multi-label only: per-label probability thresholds (float in (0, 1), id order), None before
            they are tuned (0.5 is used then).
        target_mean / target_std: regression only: the training target's mean and (population) standard
            deviation in the target's own units; the model predicts ``(y - mean) / std``.
        label_separator: multi-label only: the separator the label strings were split on ("" for lists or
            one-hot columns).
    Raises:
        ConfigError: unknown kind, fewer than 2 labels for a classification kind, ids not 0..num_labels-1,
            thresholds of the wrong length, a non-positive target_std.
    """

    kind: str
    text_column: str
    label_column: str
    id2label: dict[int, str] = field(default_factory=dict)
    modality: str = "text"
    text_pair_column: str | None = None
    thresholds: list[float] | None = None
    target_mean: float | None = None
    target_std: float | None = None
    label_separator: str | None = None

    def __post_init__(self) -> None:
        if self.kind in _OLD_KINDS:
            self.kind, self.modality = _OLD_KINDS[self.kind]
        self.kind = str(self.kind).replace("-", "_")
        if self.kind not in KIND_NAMES:
            raise ConfigError(f"task kind {self.kind!r} is not supported; choose one of {', '.join(KIND_NAMES)}")
        if self.modality not in MODALITIES:
            raise ConfigError(f"modality {self.modality!r} is not supported; choose one of {MODALITIES}")
        self.id2label = {int(k): str(v) for k, v in self.id2label.items()}
        if sorted(self.id2label) != list(range(len(self.id2label))):
            raise ConfigError("id2label keys must be 0..num_labels-1")
        least = 1 if self.kind == "regression" else 2
        if len(self.id2label) < least:
            raise ConfigError(f"a {self.kind.replace('_', '-')} task needs at least {least} label(s)")
        if self.thresholds is not None and len(self.thresholds) != len(self.id2label):
            raise ConfigError(f"{len(self.thresholds)} thresholds for {len(self.id2label)} labels")
        if self.target_std is not None and not self.target_std > 0:
            raise ConfigError(f"target_std must be > 0, got {self.target_std}")

    @property
    def num_labels(self) -> int:
        """Outputs of the head (logits per row): classes, labels, or 1 for regression."""
        return len(self.id2label)

    @property
    def label2id(self) -> dict[str, int]:
        return {v: k for k, v in self.id2label.items()}

    @property
    def labels(self) -> list[str]:
        """Label names in id order."""
        return [self.id2label[i] for i in range(self.num_labels)]

    @property
    def problem_type(self) -> str:
        """transformers' name for the kind: single_label_classification, multi_label_classification, regression."""
        return PROBLEM_TYPES[self.kind]

    @property
    def input_kind(self) -> str:
        """"image", "text_pair" or "text"."""
        return "image" if self.modality == "image" else "text_pair" if self.text_pair_column else "text"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["id2label"] = {str(k): v for k, v in self.id2label.items()}
        d["num_labels"] = self.num_labels
        d["problem_type"] = self.problem_type
        d["input_kind"] = self.input_kind
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TaskSpec":
        """The inverse of :meth:`to_dict` (also reads specs saved before task kinds existed)."""
        names = ("kind", "text_column", "label_column", "modality", "text_pair_column", "thresholds", "target_mean",
                 "target_std", "label_separator")
        return cls(**{k: d[k] for k in names if k in d}, id2label={int(k): v for k, v in d["id2label"].items()})
