"""Checkpoints of a training run with orbax, and the run's saved config.

A workdir holds::

    config.json        the config the run was started with (read by ``jaxdiff sample``/``eval``)
    checkpoints/<step> orbax checkpoints of the train state, the last ``max_to_keep`` of them

Checkpoints are written asynchronously (training goes on while the files are written) and
atomically: orbax writes into a temporary directory and renames it when complete, so a crash
mid-save leaves no step directory behind. A step directory that cannot be restored all the
same (deleted or truncated files) is skipped with a warning and the next older one is used.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import jax
import ml_collections
import orbax.checkpoint as ocp

__all__ = [
    "CONFIG_FILE",
    "IncompatibleWorkdirError",
    "Checkpointer",
    "save_config",
    "load_config",
    "check_compatible",
]

CONFIG_FILE = "config.json"

# The config sections that fix the shapes and meaning of a checkpoint's parameters: a run can
# only resume from (or be sampled with) a checkpoint whose config agrees on these.
_STRUCTURAL = ("family", "model", "diffusion", "data.dataset")


class IncompatibleWorkdirError(ValueError):
    """The workdir holds a run whose config differs in a way that makes its checkpoints unusable."""


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
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, enable_async_checkpointing=asynchronous, create=False
        )
        self._manager = ocp.CheckpointManager(self.directory, options=options)

    def steps(self) -> list[int]:
        """The steps of the complete checkpoints on disk, oldest first."""
        self._manager.reload()
        return sorted(self._manager.all_steps())

    def save(self, step: int, state: Any) -> None:
        """Starts saving ``state`` as checkpoint ``step`` (returns before the files are written)."""
        self._manager.save(step, args=ocp.args.StandardSave(state), force=True)

    def restore_latest(self, abstract_state: Any) -> tuple[int, Any] | None:
        """Restores the newest checkpoint that can be read into ``abstract_state``.

        Args:
          abstract_state: a pytree of ``jax.ShapeDtypeStruct`` (with shardings) like the state.

        Returns:
          ``(step, state)``, or None when there is no readable checkpoint. Unreadable step
          directories are skipped with a warning (and left on disk).
        """
        for step in reversed(self.steps()):
            try:
                state = self._manager.restore(step, args=ocp.args.StandardRestore(abstract_state))
            except Exception as e:  # noqa: BLE001 - any failure to read means "skip it"
                reason = str(e).splitlines()[0] if str(e) else type(e).__name__
                warnings.warn(
                    f"skipping unreadable checkpoint {self.directory / str(step)}: {reason[:200]}",
                    stacklevel=2,
                )
                continue
            _check_shapes(state, abstract_state, self.directory / str(step))
            return step, state
        return None

    def wait(self) -> None:
        """Blocks until every started save is on disk."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.close()


def _check_shapes(state, abstract_state, where) -> None:
    got = jax.tree.map(lambda a: (a.shape, a.dtype), state)
    want = jax.tree.map(lambda a: (a.shape, a.dtype), abstract_state)
    if got != want:
        raise IncompatibleWorkdirError(f"checkpoint {where} does not match the model of the config")


def _as_plain(config: ml_collections.ConfigDict) -> dict:
    """The config as plain JSON data (tuples become lists), for saving and comparing."""
    return json.loads(config.to_json())


def save_config(config: ml_collections.ConfigDict, workdir) -> None:
    """Writes ``config.json`` into the workdir atomically (temporary file, then rename)."""
    path = Path(workdir) / CONFIG_FILE
    tmp = path.with_name(f".{CONFIG_FILE}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(_as_plain(config), indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def load_config(workdir) -> ml_collections.ConfigDict:
    """Reads the workdir's ``config.json``.

    Raises:
      FileNotFoundError: if the workdir has no saved config (it is not a jaxdiff run).
    """
    path = Path(workdir) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{workdir} is not a jaxdiff run directory (no {CONFIG_FILE})")
    return ml_collections.ConfigDict(json.loads(path.read_text()))


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
