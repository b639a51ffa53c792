"""The job manager's trained runs: kept loaded for predictions (the last few), rebuilt from their folders otherwise,
and exported to ONNX bundles. A mixin of :class:`~peft_core.jobs.manager.JobManager` (its ``_lock``, ``_loaded``,
``_keep``, ``_busy``, ``_jobs``, ``get``, ``dir`` and ``_write``)."""
from __future__ import annotations

from ..errors import JobError


class TrainedRunsMixin:
    """``run`` and ``export`` for :class:`~peft_core.jobs.manager.JobManager`."""

    def _remember(self, run_id: str, run) -> None:
        self._loaded[run_id] = run
        self._loaded.move_to_end(run_id)
        while len(self._loaded) > self._keep:
            self._loaded.popitem(last=False)

    def run(self, token: str, run_id: str):
        """The trained :class:`~peft_core.pipeline.Run` (from memory, else rebuilt from its folder).

        Raises:
            JobError: not this owner's run, or it has no trained model (queued, running, failed).
        """
        info = self.get(token, run_id)
        if not info.has_model:
            raise JobError(f"run {run_id[:8]} is {info.state}: it has no trained model"
                           + (f" ({info.error})" if info.error else ""))
        with self._lock:
            run = self._loaded.get(run_id)
        if run is None:
            from ..runstore import load_run

            run = load_run(self.dir(run_id))
            with self._lock:
                self._remember(run_id, run)
        return run

    def export(self, token: str, run_id: str, callbacks=()):
        """Export the run to ONNX, check parity, build the bundle (see ``exporters.run_export.export_run``;
        ``callbacks`` get its "phase" events); the bundle path is recorded on the run. Raises JobError (see
        :meth:`run`), ExportError or NonFiniteError."""
        from exporters.run_export import export_run

        self.get(token, run_id)
        with self._lock:
            self._busy[run_id] = self._busy.get(run_id, 0) + 1  # a cleanup leaves it alone meanwhile
        try:
            res = export_run(self.run(token, run_id), callbacks=callbacks)
            if res.bundle is not None:
                with self._lock:
                    self._jobs[run_id].bundle = str(res.bundle)
                    self._write(self._jobs[run_id])
        finally:
            with self._lock:
                self._busy[run_id] -= 1
                if not self._busy[run_id]:
                    del self._busy[run_id]
        return res

