"""Atomic checkpoints: written to checkpoints/.tmp-checkpoint-N/, renamed to checkpoint-N/ when complete.

The Trainer's own save writes straight into checkpoint-N/, so a kill mid-save leaves a directory
that looks like a checkpoint. Here a checkpoint-N/ directory exists only once every file of it is
on disk (fsync'ed); anything else is a `.tmp-` directory that the next run deletes.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
from pathlib import Path
from typing import Any

TMP_PREFIX = ".tmp-checkpoint-"
STATE_FILE = "trainer_state.json"
_NAME = re.compile(r"^checkpoint-(\d+)$")


def checkpoint_step(path: Path) -> int | None:
    """Return N for a directory named checkpoint-N, else None."""
    match = _NAME.match(Path(path).name)
    return int(match.group(1)) if match else None


def is_complete(path: Path) -> bool:
    """Return whether `path` is a finished checkpoint (right name, trainer state written)."""
    return checkpoint_step(path) is not None and (Path(path) / STATE_FILE).is_file()


def complete_checkpoints(checkpoints: Path) -> list[Path]:
    """Return the complete checkpoints under `checkpoints`, oldest step first."""
    if not Path(checkpoints).is_dir():
        return []
    found = [p for p in Path(checkpoints).iterdir() if p.is_dir() and is_complete(p)]
    return sorted(found, key=checkpoint_step)


def rotate_checkpoints(
    checkpoints: Path, limit: int | None, keep: tuple[Path | None, ...] = ()
) -> list[Path]:
    """Delete the oldest complete checkpoints beyond `limit`; never the newest nor any in `keep` (the best).

    The `limit` newest are kept, and the best on top of them when it is older. Partial saves are not
    touched. Returns the deleted paths.
    """
    if not limit or limit <= 0:
        return []
    found = complete_checkpoints(checkpoints)
    kept = {p.resolve() for p in found[-limit:]} | {Path(p).resolve() for p in keep if p}
    deleted = [p for p in found if p.resolve() not in kept]
    for path in deleted:
        # Renamed first, so a kill during the deletion leaves a `.tmp-` dir the next run removes, never
        # a checkpoint-N/ with files missing.
        doomed = path.with_name(f"{TMP_PREFIX}{checkpoint_step(path)}-deleted")
        try:
            os.replace(path, doomed)
        except OSError:
            doomed = path
        shutil.rmtree(doomed, ignore_errors=True)
    return deleted


def fsync_tree(path: Path) -> None:
    """Flush every file under `path` (and the directories) to disk before the rename publishes them."""
    for root, _dirs, files in os.walk(path):
        for name in files:
            fd = os.open(os.path.join(root, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(root))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class AtomicCheckpointMixin:
    """A Trainer mixin whose `_save_checkpoint` publishes a checkpoint only once it is complete.

    Use as `class MyTrainer(AtomicCheckpointMixin, Trainer)`. `args.output_dir` is the checkpoints dir.
    """

    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        checkpoints = Path(self.args.output_dir)
        step = self.state.global_step
        final = checkpoints / f"checkpoint-{step}"
        staging = checkpoints / f"{TMP_PREFIX}{step}"
        try:
            self._write_checkpoint(model, checkpoints, staging, final)
        except OSError as exc:
            # A full disk (or any failed write) must not leave a half checkpoint, nor a traceback.
            shutil.rmtree(staging, ignore_errors=True)
            raise checkpoint_write_error(exc, staging, final, self.args.save_total_limit) from exc

    def _write_checkpoint(self, model: Any, checkpoints: Path, staging: Path, final: Path) -> None:
        step = self.state.global_step
        if self.args.should_save:
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(parents=True)
        self.accelerator.wait_for_everyone()
        self.store_flos()
        self.save_model(str(staging), _internal_call=True)
        if self.state.best_global_step:
            # Record the best checkpoint under its published name (it is this one, or an older complete one).
            best = checkpoints / f"checkpoint-{self.state.best_global_step}"
            if self.state.best_global_step == step or best.exists():
                self.state.best_model_checkpoint = str(best)
        if not self.args.save_only_model:
            self._save_optimizer_and_scheduler(str(staging))
            self._save_scaler(str(staging))
            self._save_rng_state(str(staging))
        if self.args.should_save:
            self._save_callback_states()
            self.state.save_to_json(str(staging / STATE_FILE))
        self.accelerator.wait_for_everyone()
        if self.args.should_save:
            self._publish(staging, final)
            rotate_checkpoints(
                checkpoints, self.args.save_total_limit, keep=(_path(self.state.best_model_checkpoint),)
            )
        self.accelerator.wait_for_everyone()

    def _save_callback_states(self) -> None:
        from transformers.trainer_callback import ExportableState

        for callback in [*self.callback_handler.callbacks, self.control]:
            if isinstance(callback, ExportableState):
                name = type(callback).__name__
                if isinstance(self.state.stateful_callbacks.get(name), list):
                    self.state.stateful_callbacks[name].append(callback.state())
                else:
                    self.state.stateful_callbacks[name] = callback.state()

    @staticmethod
    def _publish(staging: Path, final: Path) -> None:
        fsync_tree(staging)
        replaced = None
        if final.exists():  # a save at the same step again (e.g. after resume): replace it
            # Moved aside by a rename, not deleted, so no moment leaves a checkpoint-N/ half deleted.
            replaced = final.with_name(f"{TMP_PREFIX}{checkpoint_step(final)}-replaced")
            shutil.rmtree(replaced, ignore_errors=True)
            os.replace(final, replaced)
        os.replace(staging, final)
        _fsync_dir(final.parent)
        if replaced is not None:
            shutil.rmtree(replaced, ignore_errors=True)


def checkpoint_write_error(exc: OSError, staging: Path, final: Path, limit: int | None) -> Exception:
    """Return the HfllmError for a checkpoint save that failed with `exc` (the partial save is gone)."""
    from hfllm.errors import HfllmError

    where = exc.filename or staging
    previous = [p for p in complete_checkpoints(final.parent) if p != final]
    kept = f"the previous checkpoint {previous[-1]} is intact" if previous else "no earlier checkpoint exists"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return HfllmError(
            f"no space left on the device while saving {final.name} ({where}); the partial save was removed",
            f"free space under {final.parent} or set training.save_total_limit (now {limit or 'unset'}) to keep "
            f"fewer checkpoints, then rerun the same command to resume; {kept}",
        )
    return HfllmError(
        f"could not write {final.name} ({where}): {exc.strerror or exc}; the partial save was removed",
        f"check that {final.parent} is writable, then rerun the same command to resume; {kept}",
    )


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None
