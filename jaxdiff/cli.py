"""The command line: ``jaxdiff train | sample | eval | stats`` (also ``python -m jaxdiff``).

::

    jaxdiff train [--config configs/NAME.py] [--workdir DIR] [--config.FIELD=VALUE ...]
    jaxdiff sample --workdir DIR [--sampler ddpm|ddim|dpm_solver|ode|langevin] [--steps N]
                   [--num N] [--seed S] [--output FILE.npz]
    jaxdiff eval --workdir DIR [--seed S] [--output FILE.json] [--ode] [--num_samples N] ...
    jaxdiff stats --dataset NAME --output FILE.npz [--split S] [--weights FILE] [--download]
                  [--image_size N] [--bad_images error|skip]   # NAME: also folder:PATH, npz:PATH

``jaxdiff train`` with no arguments trains the digits default into ``./runs/digits_ddpm``;
rerunning it on a workdir resumes the run there. ``--config`` takes a config file or the name
of one shipped in the package (:mod:`jaxdiff.configs`, also ``configs/`` of a checkout);
``--config.a.b=v`` overrides a field (``v`` is read as a Python literal, else as a string).
``jaxdiff`` alone prints this usage; ``jaxdiff --version`` the version.

Bad input (an unknown config file or field, a config that fails to import, a field or flag
out of range, a batch size not divisible by the number of devices, an unknown dataset, an
incompatible workdir, an output that exists or cannot be written) prints one line on stderr
and exits with code 2 before anything is written. A failure that is not the input's (a full
disk, a diverged run) is one line with exit code 1. Outputs are written atomically and never
replace an existing file.
"""

from __future__ import annotations

import argparse
import ast
import traceback
import importlib.util
import json
import logging
import math
import os
import shutil
import sys
from pathlib import Path

import ml_collections
import numpy as np

__all__ = ["main", "load_config_file", "apply_overrides", "UsageError"]

_CONFIG_DIR = Path(__file__).resolve().parent / "configs"
_DEFAULT_CONFIG = "digits_ddpm"


class UsageError(ValueError):
    """Bad command-line input: reported as one line, exit code 2."""


def _config_path(spec: str) -> Path:
    """A config file path, or ``<name>.py`` among the configs shipped in the package
    (:mod:`jaxdiff.configs`; ``configs/`` of a source checkout is the same folder)."""
    path = Path(spec)
    if path.is_file():
        if path.suffix != ".py":
            raise UsageError(f"--config {spec}: a config is a Python file ending in .py")
        return path
    if path.suffix == "" and len(path.parts) == 1 and (_CONFIG_DIR / f"{spec}.py").is_file():
        return _CONFIG_DIR / f"{spec}.py"
    names = ", ".join(sorted(p.stem for p in _CONFIG_DIR.glob("*.py") if not p.stem.startswith("_")))
    raise UsageError(f"--config {spec}: no such file, and no config of that name ({names})")


def _where(error: BaseException, path: Path) -> str:
    """``file, line N`` of the innermost frame of ``error`` in the config file ``path``."""
    if isinstance(error, SyntaxError) and error.lineno:
        return f"{error.filename or path}, line {error.lineno}"
    frames = [f for f in traceback.extract_tb(error.__traceback__) if Path(f.filename) == path.resolve()]
    if not frames:  # raised in a file the config imports: its innermost frame
        frames = traceback.extract_tb(error.__traceback__)[-1:]
    return f"{frames[-1].filename}, line {frames[-1].lineno}" if frames else str(path)


def load_config_file(spec: str) -> ml_collections.ConfigDict:
    """Loads ``get_config()`` from a config file path, or from the package's configs when
    ``spec`` is a bare name (``digits_ddpm``). Configs may import their siblings
    (``import default``).

    Raises:
      UsageError: the file does not exist, has no ``get_config()``, or fails to import or
        run: one line naming the file and the line.
    """
    path = _config_path(spec)
    directory = str(path.resolve().parent)
    sys.path.insert(0, directory)
    try:
        module_spec = importlib.util.spec_from_file_location(f"_jaxdiff_config_{path.stem}", path)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
        if not hasattr(module, "get_config"):
            raise UsageError(f"config file {spec} has no get_config()")
        config = module.get_config()
    except UsageError:
        raise
    except Exception as e:  # noqa: BLE001 - any error in the user's file is reported as one line
        detail = f"{type(e).__name__}: {e}".splitlines()[0]
        if isinstance(e, ModuleNotFoundError) and (_CONFIG_DIR / f"{e.name}.py").is_file():
            detail += f" (a shipped config: import it as `from jaxdiff.configs import {e.name}`)"
        raise UsageError(f"config file {path} failed ({_where(e, path.resolve())}): {detail}") from e
    finally:
        sys.path.remove(directory)
    if not isinstance(config, ml_collections.ConfigDict):
        raise UsageError(f"config file {spec}: get_config() returned {type(config).__name__}, not a ConfigDict")
    return config


def _parse_value(text: str):
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered == "none":
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def apply_overrides(config: ml_collections.ConfigDict, overrides: dict[str, str]) -> None:
    """Sets ``config.a.b = value`` for every ``"a.b": "value"`` (the value parsed as a Python
    literal; lists become tuples where the field holds a tuple).

    Raises:
      UsageError: for an unknown field or a value of the wrong type.
    """
    for dotted, text in overrides.items():
        *parents, leaf = dotted.split(".")
        node = config
        for i, key in enumerate(parents):
            if not isinstance(node, ml_collections.ConfigDict) or key not in node:
                raise UsageError(f"unknown config field: config.{'.'.join(parents[: i + 1])}")
            node = node[key]
        if not isinstance(node, ml_collections.ConfigDict) or leaf not in node:
            raise UsageError(f"unknown config field: config.{dotted}")
        value = _parse_value(text)
        if isinstance(node[leaf], tuple) and isinstance(value, list):
            value = tuple(value)
        try:
            node[leaf] = value
        except (TypeError, ValueError) as e:
            raise UsageError(f"config.{dotted}: cannot set {text!r} ({e})") from e


def _split_overrides(rest: list[str]) -> dict[str, str]:
    """``--config.a.b=v`` or ``--config.a.b v`` -> {"a.b": "v"}; anything else is an error."""
    out, i = {}, 0
    while i < len(rest):
        arg = rest[i]
        if not arg.startswith("--config."):
            raise UsageError(f"unrecognized argument: {arg}")
        name = arg[len("--config.") :]
        if "=" in name:
            name, value = name.split("=", 1)
        elif i + 1 < len(rest):
            i += 1
            value = rest[i]
        else:
            raise UsageError(f"{arg} needs a value")
        out[name] = value
        i += 1
    return out


class _Parser(argparse.ArgumentParser):
    """argparse, with errors as one line (no usage block) and exit code 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def _integer(minimum: int, maximum: int | None = None):
    """An argparse type: an integer in [minimum, maximum]; argparse names the flag."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
        if value < minimum or (maximum is not None and value > maximum):
            bound = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
            raise argparse.ArgumentTypeError(f"must be an integer {bound}, got {value}")
        return value

    return parse


_SEED = _integer(0, 2**32 - 1)
_VARIANCES = ("fixed_small", "fixed_large", "learned", "learned_range")


def _parser() -> argparse.ArgumentParser:
    from jaxdiff import __version__

    parser = _Parser(prog="jaxdiff", description="Diffusion models in JAX.")
    parser.add_argument("--version", action="version", version=f"jaxdiff {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser(
        "train",
        help="train (or resume) a model",
        epilog="--config.FIELD=VALUE overrides a config field, e.g. --config.training.num_steps=500",
    )
    train.add_argument("--config", default=None, help="config file, or the name of a shipped one")
    train.add_argument("--workdir", default=None, help="run directory (default ./runs/<name>)")
    sample = sub.add_parser("sample", help="sample from a trained run")
    sample.add_argument("--workdir", required=True)
    sample.add_argument("--sampler", default=None, help="default: the config's")
    sample.add_argument("--steps", type=_integer(1), default=None, help="sampler steps (ddim, ...)")
    sample.add_argument("--num", type=_integer(1), default=64)
    sample.add_argument(
        "--batch", type=_integer(1), default=256,
        help="samples per call of the sampler (they are streamed to the file batch by batch)",
    )
    sample.add_argument("--seed", type=_SEED, default=0)
    sample.add_argument(
        "--output", default=None,
        help="FILE.npz (default WORKDIR/samples.npz): images as uint8 NHWC, points as float32",
    )
    evaluate = sub.add_parser("eval", help="evaluate a trained run (bits/dim, FID, ...)")
    evaluate.add_argument("--workdir", required=True)
    evaluate.add_argument("--seed", type=_SEED, default=0)
    evaluate.add_argument("--output", default=None, help="FILE.json (default WORKDIR/eval.json)")
    evaluate.add_argument("--split", default="test", help="dataset split for the bound")
    evaluate.add_argument("--max_examples", type=_integer(1), default=None)
    evaluate.add_argument(
        "--variance", default=None, choices=_VARIANCES, help="reverse variance (default: config's)"
    )
    evaluate.add_argument("--ode", action="store_true", help="also the probability-flow ODE NLL")
    evaluate.add_argument(
        "--num_samples", type=_integer(0), default=0, help="samples for FID / digits FD (0 or >= 2)"
    )
    evaluate.add_argument("--sampler", default=None)
    evaluate.add_argument("--steps", type=_integer(1), default=None)
    evaluate.add_argument("--fid_stats", default=None, help="reference FID statistics (.npz)")
    evaluate.add_argument("--iwae_samples", type=_integer(1), default=None, help="k of a VAE's IWAE bound")
    evaluate.add_argument(
        "--bound_draws", type=_integer(1), default=None,
        help="estimates of the bound per example (default: the run's; a VDM run's 256)",
    )
    stats = sub.add_parser("stats", help="FID reference statistics of a dataset")
    stats.add_argument("--dataset", required=True)
    stats.add_argument("--split", default="train")
    stats.add_argument("--output", required=True, help="FILE.npz")
    stats.add_argument("--weights", default=None, help="FID Inception weights (.pth or .npz)")
    stats.add_argument("--download", action="store_true", help="fetch the weights if missing")
    stats.add_argument("--batch_size", type=_integer(1), default=200)
    stats.add_argument(
        "--image_size", type=_integer(1), default=None,
        help="folder:/npz: datasets: resize and centre-crop to N x N",
    )
    stats.add_argument(
        "--bad_images", choices=("error", "skip"), default="error",
        help="folder: datasets: stop at an unreadable image file, or leave it out",
    )
    return parser


def _check_workdir(workdir: Path) -> None:
    """The run directory is a directory, or can be made: its nearest existing parent is a
    writable directory."""
    if workdir.exists() and not workdir.is_dir():
        raise UsageError(f"--workdir {workdir} is a file, not a directory")
    existing = workdir
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"--workdir {workdir}: {existing} is not a writable directory")


def _train(args, overrides: dict[str, str]) -> int:
    from jaxdiff import checkpoint, train
    from jaxdiff.workdir import check_contained

    if args.workdir:
        check_contained(args.workdir)  # before reading the run's files
    if args.config is None and args.workdir and (Path(args.workdir) / checkpoint.CONFIG_FILE).is_file():
        config = checkpoint.load_config(args.workdir)  # resume with the run's own config
    else:
        config = load_config_file(args.config or _DEFAULT_CONFIG)
    apply_overrides(config, overrides)
    workdir = Path(args.workdir or Path("runs") / config.name)
    _check_workdir(workdir)
    try:
        train.train(config, workdir)
    except train.Interrupted as e:
        return 128 + int(e.args[0])
    return 0


def _new_output(path, flag: str, suffix: str) -> Path:
    from jaxdiff._io import check_new_output

    path = Path(path)
    if path.suffix != suffix:
        raise UsageError(f"{flag} must end in {suffix}, got {path}")
    try:
        return check_new_output(path, flag=flag)
    except ValueError as e:
        raise UsageError(str(e)) from e


def _sample(args) -> int:
    import jax

    from jaxdiff import data
    from jaxdiff._io import write_npz_stream
    from jaxdiff.engine import bind_options

    output = _new_output(args.output or Path(args.workdir) / "samples.npz", "--output", ".npz")
    grid_path = _new_output(output.with_suffix(".png"), "--output (its grid)", ".png")
    run = _load(args.workdir)
    batch = min(args.num, args.batch)
    sample = bind_options(run.family.sample, "sampler", sampler=args.sampler, num_steps=args.steps)
    draw = jax.jit(lambda state, key: sample(state, key, batch))
    state = run.state
    rng = jax.random.PRNGKey(args.seed)
    shape = jax.eval_shape(draw, state, rng).shape  # traced, not computed: sizes known now
    dtype = np.uint8 if len(shape) == 4 else np.float32  # images as uint8; points as floats
    _check_room(output, args.num * math.prod(shape[1:]) * np.dtype(dtype).itemsize)
    first = []

    def batches():
        """The samples in batches: batch i drawn with the key fold_in(key, i) (batch 0 with the
        key itself, so that a --num within one batch is one call of the sampler)."""
        for i, start in enumerate(range(0, args.num, batch)):
            key = rng if i == 0 else jax.random.fold_in(rng, i)
            x = np.asarray(jax.device_get(draw(state, key)))[: args.num - start]
            if i == 0:
                first.append(x)
            yield data.to_uint8(x) if x.ndim == 4 else x.astype(dtype)

    write_npz_stream(output, "samples", (args.num, *shape[1:]), dtype, batches())
    try:
        data.save_samples_png(first[0], grid_path, overwrite=False)
    except BaseException:
        output.unlink()  # the pair is written whole or not at all
        raise
    shown = "" if args.num <= batch else f" (its first {batch})"
    print(f"wrote {output} ({np.dtype(dtype)} {[args.num, *shape[1:]]}) and {grid_path}{shown}")
    return 0


def _check_room(output: Path, nbytes: int) -> None:
    """Refuses, before any sampling, an output larger than the free space where it goes."""
    free = shutil.disk_usage(output.parent).free
    if nbytes > free:
        raise UsageError(
            f"--num: the samples need {nbytes / 2**30:.3g} GiB in {output.parent}, which has "
            f"{free / 2**30:.3g} GiB free; ask for fewer, or write them elsewhere (--output)"
        )


def _load(workdir):
    from jaxdiff import train

    try:
        return train.load_run(workdir)
    except FileNotFoundError as e:
        raise UsageError(str(e)) from e


def _eval(args) -> int:
    from jaxdiff import evaluate
    from jaxdiff._io import write_text

    output = _new_output(args.output or Path(args.workdir) / "eval.json", "--output", ".json")
    if args.num_samples == 1:
        raise UsageError("--num_samples must be 0 or at least 2 (a covariance needs two samples)")
    if args.fid_stats is not None:
        if not args.num_samples:
            raise UsageError("--fid_stats needs --num_samples (at least 2)")
        from jaxdiff.metrics import fid

        try:
            fid.load_statistics(args.fid_stats)  # readable before any computation
        except (OSError, ValueError) as e:
            raise UsageError(f"--fid_stats {args.fid_stats}: {e}") from e
        fid.weights_path()  # the Inception weights are there before any computation
    run = _load(args.workdir)
    results = evaluate.evaluate_run(
        run,
        seed=args.seed,
        split=args.split,
        max_examples=args.max_examples,
        variance=args.variance,
        ode=args.ode,
        num_samples=args.num_samples,
        sampler=args.sampler,
        num_steps=args.steps,
        fid_stats=args.fid_stats,
        iwae_samples=args.iwae_samples,
        bound_draws=args.bound_draws,
    )
    write_text(output, json.dumps(results, indent=2) + "\n")
    print(f"wrote {output}")
    return 0


def _stats(args) -> int:
    output = _new_output(args.output, "--output", ".npz")
    from jaxdiff import data
    from jaxdiff.metrics import fid

    options = data.ImageOptions(image_size=args.image_size, bad_images=args.bad_images)
    data.load_source(args.dataset, split=args.split, options=options)  # known, before the weights
    variables = fid.load_inception(args.weights, download=args.download)
    result = fid.dataset_statistics(
        args.dataset,
        split=args.split,
        variables=variables,
        output=output,
        batch_size=args.batch_size,
        overwrite=False,
        options=options,
    )
    print(f"wrote {output}: {result.num} examples, {result.mu.shape[0]}-d features")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``jaxdiff``; returns the exit code (2 for bad input)."""
    from_command_line = argv is None
    argv = sys.argv[1:] if argv is None else argv
    if not argv:  # `jaxdiff` or `python -m jaxdiff` alone: what it can do
        _parser().print_help()
        return 0
    args, rest = _parser().parse_known_args(argv)
    from jaxdiff import _command

    if from_command_line:
        _command.install(args.command)  # signals and background errors: one line each
    # orbax reports through absl logging, with tracebacks, what it also raises; the CLI turns
    # those errors into one line each
    logging.getLogger("absl").setLevel(logging.CRITICAL)
    from jaxdiff import checkpoint, data, distributed, train
    from jaxdiff._io import OutputWriteError

    try:
        if args.command == "train":
            code = _train(args, _split_overrides(rest))
        else:
            if rest:
                raise UsageError(f"unrecognized arguments: {' '.join(rest)}")
            distributed.check_backend()
            code = {"sample": _sample, "eval": _eval, "stats": _stats}[args.command](args)
    except (
        UsageError,
        data.DataError,
        checkpoint.IncompatibleWorkdirError,
        FileNotFoundError,
        ValueError,
    ) as e:
        print(f"jaxdiff {args.command}: error: {e}", file=sys.stderr)
        return 2
    except (train.TrainingError, distributed.StartupError) as e:
        print(f"jaxdiff {args.command}: {e}", file=sys.stderr)
        return 1
    except OutputWriteError as e:
        print(f"jaxdiff {args.command}: {e}", file=sys.stderr)
        if from_command_line:
            # Leave now: after a failed write, background writers (orbax, TensorBoard) would
            # retry at exit and print tracebacks. What could be saved is saved and closed.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(1)
        return 1
    except Exception as e:  # a failure of jaxdiff itself: one line too, the traceback on demand
        if not from_command_line or _command.DEBUG:
            raise
        detail = f"{type(e).__name__}: {e}".splitlines()[0]
        print(f"jaxdiff {args.command}: internal error ({detail}); JAXDIFF_DEBUG=1 shows where", file=sys.stderr)
        return 1
    failed = _command.background_error()
    if failed is not None and code == 0:
        detail = f"{type(failed).__name__}: {failed}".splitlines()[0]
        print(f"jaxdiff {args.command}: a background thread failed ({detail})", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
