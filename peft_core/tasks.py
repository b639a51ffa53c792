"""TaskSpec: what the model must predict, inferred from the data.

A task is one entry of :data:`TASK_KINDS`: ``text-classification`` or ``image-classification``. The spec carries the standard
label mapping fields of transformers configs (``num_labels``, ``id2label``, ``label2id``).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .errors import ConfigError

TASK_KINDS = ("text-classification", "image-classification")


@dataclass
class TaskSpec:
    """The prediction task.

    Attributes:
        kind: one of :data:`TASK_KINDS`.
        text_column / label_column: column names in the user's file.
        id2label: class id (int, 0..num_labels-1) -> label name (str), ids in sorted label order.
    Raises:
        ConfigError: unknown kind, fewer than 2 labels, or ids not 0..num_labels-1.
    """

    kind: str
    text_column: str
    label_column: str
    id2label: dict[int, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in TASK_KINDS:
            raise ConfigError(f"task kind {self.kind!r} is not supported; choose one of {TASK_KINDS}")
        self.id2label = {int(k): str(v) for k, v in self.id2label.items()}
        if len(self.id2label) < 2:
            raise ConfigError("a classification task needs at least 2 labels")
        if sorted(self.id2label) != list(range(len(self.id2label))):
            raise ConfigError("id2label keys must be 0..num_labels-1")

    @property
    def num_labels(self) -> int:
        return len(self.id2label)

    @property
    def label2id(self) -> dict[str, int]:
        return {v: k for k, v in self.id2label.items()}

    @property
    def labels(self) -> list[str]:
        """Label names in id order."""
        return [self.id2label[i] for i in range(self.num_labels)]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["id2label"] = {str(k): v for k, v in self.id2label.items()}
        d["num_labels"] = self.num_labels
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TaskSpec":
        return cls(kind=d["kind"], text_column=d["text_column"], label_column=d["label_column"],
                   id2label={int(k): v for k, v in d["id2label"].items()})
