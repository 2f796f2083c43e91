"""Checkpoints of a training run with orbax, and the run's saved config.

A workdir holds::

    config.json        the config the run was started with (read by ``jaxdiff sample``/``eval``)
    checkpoints/<step> orbax checkpoints of the train state, the last ``max_to_keep`` of them

Checkpoints are written asynchronously (training goes on while the files are written) and
atomically: orbax writes into a temporary directory and renames it when complete, so a crash
mid-save leaves no step directory behind. A step directory that cannot be restored all the
same (deleted or truncated files, a missing item folder) is skipped with a warning and the
next older one is used; when training resumes it is moved into ``checkpoints_broken/`` for
inspection, so that the run can pass that step again. A checkpoint whose arrays do not fit the
config is a one-line :class:`IncompatibleWorkdirError`; a save that cannot be written (a full
disk) is a one-line :class:`CheckpointWriteError`, with the older checkpoints intact.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import warnings
from pathlib import Path
from typing import Any

import jax
import ml_collections
import orbax.checkpoint as ocp

from jaxdiff._io import OutputWriteError, read_json_object, write_text

__all__ = [
    "CONFIG_FILE",
    "IncompatibleWorkdirError",
    "CheckpointWriteError",
    "Checkpointer",
    "save_config",
    "load_config",
    "check_compatible",
]

CONFIG_FILE = "config.json"

# The config sections that fix the shapes and meaning of a checkpoint's parameters: a run can
# only resume from (or be sampled with) a checkpoint whose config agrees on these.
_STRUCTURAL = ("family", "model", "diffusion", "data.dataset")

# Room a checkpoint needs beyond its arrays' bytes: orbax's metadata files and their temporaries.
_SPACE_MARGIN = 256 * 1024


class IncompatibleWorkdirError(ValueError):
    """The workdir holds a run whose config differs in a way that makes its checkpoints unusable."""


class CheckpointWriteError(OutputWriteError):
    """A checkpoint could not be written (a full disk, no permission); not bad input."""


class Checkpointer:
    """Periodic, asynchronous, keep-the-last-N checkpoints of a pytree (the train state).

    Args:
      directory: where the step directories live (created on first save).
      max_to_keep: how many of the latest checkpoints to keep.
      asynchronous: write in a background thread (``save`` returns once the arrays are on
        the host).
    """

    def __init__(self, directory, *, max_to_keep: int = 3, asynchronous: bool = True):
        self.directory = Path(directory).absolute()
        self._saving = None  # the step of the save in flight
        self._failed = False  # a save failed: its temporaries go at close
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, enable_async_checkpointing=asynchronous, create=False
        )
        self._manager = ocp.CheckpointManager(
            self.directory, options=options, item_handlers=ocp.StandardCheckpointHandler()
        )

    def steps(self) -> list[int]:
        """The steps of the complete checkpoints on disk, oldest first."""
        self._manager.reload()
        return sorted(self._manager.all_steps())

    def save(self, step: int, state: Any) -> None:
        """Starts saving ``state`` as checkpoint ``step`` (returns before the files are written).

        Raises:
          CheckpointWriteError: the files cannot be written (a full disk, no permission);
            also raised by :meth:`wait` for a save that fails in the background. The older
            checkpoints are left intact.
        """
        self.wait()  # a failure of the previous (background) save is reported as that step's
        self._saving = step
        self._check_free_space(step, state)
        try:
            self._manager.save(step, args=ocp.args.StandardSave(state), force=True)
        except Exception as e:  # noqa: BLE001 - orbax wraps I/O errors in several types
            raise self._write_error(step, e) from e

    def _check_free_space(self, step: int, state: Any) -> None:
        """Refuses a save that cannot fit before orbax starts writing it. A save that fails
        midway leaves orbax's background writers racing its closed event loop, and they print
        tracebacks; a full disk is the common cause, and it is caught here."""
        needed = sum(getattr(leaf, "nbytes", 0) for leaf in jax.tree.leaves(state))
        where = next(p for p in (self.directory, *self.directory.parents) if p.exists())
        free = shutil.disk_usage(where).free
        if free < needed + _SPACE_MARGIN:
            raise self._write_error(
                step, f"not enough free space ({free / 2**20:.1f} MiB free, about "
                f"{(needed + _SPACE_MARGIN) / 2**20:.1f} MiB needed)"
            )

    def _remove_temporaries(self) -> None:
        for tmp in self.directory.glob("*.orbax-checkpoint-tmp*"):
            shutil.rmtree(tmp, ignore_errors=True)

    def _write_error(self, step, error: BaseException | str) -> CheckpointWriteError:
        self._failed = True
        self._remove_temporaries()  # no save is in flight now
        kept = sorted(int(p.name) for p in self.directory.glob("[0-9]*") if p.name.isdigit())
        kept = [k for k in kept if k != step]
        if isinstance(error, str):
            reason = error
        else:
            code = re.search(r"os_error_code='?(\d+)", str(error))  # tensorstore's errno
            reason = os.strerror(int(code.group(1))) if code else _first_line(error)
        return CheckpointWriteError(
            f"could not write checkpoint {step} in {self.directory}: {reason}; the older "
            f"checkpoints ({', '.join(map(str, kept)) or 'none'}) are intact. Free space (or fix "
            f"the permissions) and rerun the same command to resume"
        )

    def restore_latest(self, abstract_state: Any, *, move_aside: bool = False):
        """Restores the newest checkpoint that can be read into ``abstract_state``.

        Args:
          abstract_state: a pytree of ``jax.ShapeDtypeStruct`` (with shardings) like the state.
          move_aside: move the unreadable step directories newer than the restored one into
            ``<directory>_broken/`` (kept for inspection), so that training can write those
            steps again. Reading alone (sampling, evaluation) leaves them in place.

        Returns:
          ``(step, state)``, or None when there is no readable checkpoint. Unreadable step
          directories are skipped with a warning.

        Raises:
          IncompatibleWorkdirError: a readable checkpoint holds arrays of other shapes than
            ``abstract_state`` (the config does not match the checkpoints).
        """
        skipped = []
        for step in reversed(self.steps()):
            where = self.directory / str(step)
            try:
                metadata = self._manager.item_metadata(step)
                _check_metadata(metadata, abstract_state, where)
                state = self._manager.restore(step, args=ocp.args.StandardRestore(abstract_state))
            except IncompatibleWorkdirError:
                raise
            except Exception as e:  # noqa: BLE001 - any failure to read means "skip it"
                warnings.warn(
                    f"skipping unreadable checkpoint {where}: {_first_line(e)[:200]}", stacklevel=2
                )
                skipped.append(step)
                continue
            if move_aside:
                for broken in skipped:
                    self.move_aside(broken)
            return step, state
        return None

    def move_aside(self, step: int) -> Path:
        """Moves step directory ``step`` into ``<directory>_broken/`` (a new name if taken)."""
        target_dir = self.directory.with_name(self.directory.name + "_broken")
        target_dir.mkdir(exist_ok=True)
        target = target_dir / str(step)
        n = 1
        while target.exists():
            target, n = target_dir / f"{step}.{n}", n + 1
        os.replace(self.directory / str(step), target)
        warnings.warn(f"moved unreadable checkpoint {self.directory / str(step)} to {target}", stacklevel=2)
        self._manager.reload()
        return target

    def wait(self) -> None:
        """Blocks until every started save is on disk.

        Raises:
          CheckpointWriteError: a background save failed.
        """
        try:
            self._manager.wait_until_finished()
        except Exception as e:  # noqa: BLE001
            raise self._write_error(self._saving, e) from e

    def close(self) -> None:
        try:
            self._manager.close()
        except Exception:  # noqa: BLE001, S110 - a failed background save was reported by wait()
            pass
        if self._failed:  # orbax's writers may have gone on after the failure was raised
            self._remove_temporaries()


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _leaf_specs(tree) -> list[tuple[tuple[int, ...], str]]:
    return sorted((tuple(a.shape), str(a.dtype)) for a in jax.tree.leaves(tree))


def _check_metadata(metadata, abstract_state, where) -> None:
    """Compares a checkpoint's array shapes and dtypes (from its metadata, before reading any
    data) with the state the config builds."""
    tree = getattr(metadata, "tree", metadata)
    saved = {getattr(a, "name", str(i)): (tuple(a.shape), str(a.dtype)) for i, a in enumerate(jax.tree.leaves(tree))}
    want = _leaf_specs(abstract_state)
    if sorted(saved.values()) == want:
        return
    extra = [name for name, spec in saved.items() if spec not in want]
    detail = f"e.g. {extra[0]} {list(saved[extra[0]][0])}" if extra else "other arrays"
    raise IncompatibleWorkdirError(
        f"checkpoint {where} does not match the config ({len(saved)} arrays vs "
        f"{len(want)} the config builds; {detail}): was {CONFIG_FILE} edited? Use the config the "
        f"run was trained with, or another --workdir"
    )


def _as_plain(config: ml_collections.ConfigDict) -> dict:
    """The config as plain JSON data (tuples become lists), for saving and comparing."""
    return json.loads(config.to_json())


def save_config(config: ml_collections.ConfigDict, workdir) -> None:
    """Writes ``config.json`` into the workdir atomically (temporary file, then rename)."""
    text = json.dumps(_as_plain(config), indent=2, sort_keys=True) + "\n"
    write_text(Path(workdir) / CONFIG_FILE, text, overwrite=True)


def load_config(workdir) -> ml_collections.ConfigDict:
    """Reads the workdir's ``config.json``.

    Raises:
      FileNotFoundError: if the workdir has no saved config (it is not a jaxdiff run).
      IncompatibleWorkdirError: the file is not a JSON object (truncated, edited), naming it.
    """
    path = Path(workdir) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{workdir} is not a jaxdiff run directory (no {CONFIG_FILE})")
    try:
        return ml_collections.ConfigDict(read_json_object(path, what="the run's config"))
    except ValueError as e:
        raise IncompatibleWorkdirError(f"{e}; restore it or use another --workdir") from e


def _get(tree: dict, dotted: str):
    for key in dotted.split("."):
        tree = tree.get(key) if isinstance(tree, dict) else None
    return tree


def _differences(a, b, prefix: str) -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b)):
            out += _differences(a.get(key), b.get(key), f"{prefix}.{key}")
        return out
    return [] if a == b else [f"{prefix}: {a!r} (saved) vs {b!r}"]


def check_compatible(config: ml_collections.ConfigDict, workdir) -> None:
    """Checks that ``config`` can resume the run saved in ``workdir`` (if there is one).

    Two configs are compatible when they agree on the model, the diffusion process and the
    dataset; the optimizer's rates, the number of steps, logging and sampling may change.

    Raises:
      IncompatibleWorkdirError: naming the first differing fields.
    """
    if not (Path(workdir) / CONFIG_FILE).is_file():
        return
    saved, new = _as_plain(load_config(workdir)), _as_plain(config)
    diffs = []
    for section in _STRUCTURAL:
        diffs += _differences(_get(saved, section), _get(new, section), section)
    if diffs:
        shown = "; ".join(diffs[:3]) + (f"; and {len(diffs) - 3} more" if len(diffs) > 3 else "")
        raise IncompatibleWorkdirError(
            f"workdir {workdir} holds a run with an incompatible config ({shown}); "
            f"use another --workdir"
        )
