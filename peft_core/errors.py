"""Typed errors of the core.

Every error a user can cause is a :class:`PeftCoreError` whose message says what is wrong, where, and how to fix
it. The app shows ``str(error)`` as a message; the CLI prints it on one line and exits non-zero. Subclasses that
describe bad values also derive from :class:`ValueError` so generic callers can catch them as such.
"""


class PeftCoreError(Exception):
    """Base class of all errors the core raises on purpose (bad input, missing resource, failed check)."""


class DataError(PeftCoreError, ValueError):
    """An uploaded dataset cannot be read or does not fit the task (format, columns, labels, split sizes)."""


class ConfigError(PeftCoreError, ValueError):
    """A configuration field has an invalid value (names the field and the accepted range)."""


class ModelLoadError(PeftCoreError):
    """A base model cannot be resolved or loaded (unknown name, missing folder, no network for a Hub ID)."""


class ExportError(PeftCoreError):
    """ONNX export, verification or bundling failed (parity failures are reported, not raised)."""


class Cancelled(PeftCoreError):
    """Training was stopped by the user through the stop flag."""


class JobError(PeftCoreError, LookupError):
    """No such run for this owner, a missing owner token, or an action the run's state does not allow."""


class RunCancelled(Cancelled):
    """A run was stopped before it had anything to offer: cancelled while preparing, encoding, before its first
    epoch ended, or during the held-out evaluation. ``pipeline.fine_tune`` raises it; the job is then recorded
    as "cancelled" with no results and this message as its error. ``phase``: the phase it was stopped in."""

    def __init__(self, message: str = "cancelled before the first epoch ended: there is no model to offer",
                 phase: str = "") -> None:
        super().__init__(message)
        self.phase = phase


class NonFiniteError(PeftCoreError, ArithmeticError):
    """A number that must be finite became NaN or infinite: the training or validation loss (training diverged;
    no model is kept), or the logits of a model about to be exported."""
