"""The command line: ``jaxdiff train | sample | eval | stats`` (also ``python -m jaxdiff``).

::

    jaxdiff train [--config configs/NAME.py] [--workdir DIR] [--config.FIELD=VALUE ...]
    jaxdiff sample --workdir DIR [--sampler ddpm|ddim|dpm_solver|ode|langevin] [--steps N]
                   [--num N] [--seed S] [--output FILE.npz]
    jaxdiff eval --workdir DIR [--seed S] [--output FILE.json] [--ode] [--num_samples N] ...
    jaxdiff stats --dataset NAME --output FILE.npz [--split S] [--weights FILE] [--download]

``jaxdiff train`` with no arguments trains the digits default into ``./runs/digits_ddpm``;
rerunning it on a workdir resumes the run there. ``--config`` takes a config file or the name
of one in the repository's ``configs/``; ``--config.a.b=v`` overrides a field (``v`` is read
as a Python literal, else as a string).

Bad input (an unknown config file or field, a batch size not divisible by the number of
devices, an unknown dataset, an incompatible workdir) prints one line on stderr and exits with
code 2 before anything is written.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import logging
import os
import sys
from pathlib import Path

import ml_collections
import numpy as np

__all__ = ["main", "load_config_file", "apply_overrides", "UsageError"]

_CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
_DEFAULT_CONFIG = "digits_ddpm"


class UsageError(ValueError):
    """Bad command-line input: reported as one line, exit code 2."""


def load_config_file(spec: str) -> ml_collections.ConfigDict:
    """Loads ``get_config()`` from a config file path, or from ``configs/<spec>.py`` of the
    repository when ``spec`` is a bare name. Configs may import their siblings
    (``import default``)."""
    path = Path(spec)
    if not path.is_file() and path.suffix == "" and (_CONFIG_DIR / f"{spec}.py").is_file():
        path = _CONFIG_DIR / f"{spec}.py"
    if not path.is_file():
        raise UsageError(f"config file not found: {spec}")
    directory = str(path.resolve().parent)
    sys.path.insert(0, directory)
    try:
        module_spec = importlib.util.spec_from_file_location(f"_jaxdiff_config_{path.stem}", path)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
    finally:
        sys.path.remove(directory)
    if not hasattr(module, "get_config"):
        raise UsageError(f"config file {spec} has no get_config()")
    return module.get_config()


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


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="jaxdiff", description="Diffusion models in JAX.")
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser(
        "train",
        help="train (or resume) a model",
        epilog="--config.FIELD=VALUE overrides a config field, e.g. --config.training.num_steps=500",
    )
    train.add_argument("--config", default=None, help="config file or name in configs/")
    train.add_argument("--workdir", default=None, help="run directory (default ./runs/<name>)")
    sample = sub.add_parser("sample", help="sample from a trained run")
    sample.add_argument("--workdir", required=True)
    sample.add_argument("--sampler", default=None, help="default: the config's")
    sample.add_argument("--steps", type=int, default=None, help="sampler steps (ddim, ...)")
    sample.add_argument("--num", type=int, default=64)
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument(
        "--output", default=None,
        help="FILE.npz (default WORKDIR/samples.npz): images as uint8 NHWC, points as float32",
    )
    evaluate = sub.add_parser("eval", help="evaluate a trained run (bits/dim, FID, ...)")
    evaluate.add_argument("--workdir", required=True)
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.add_argument("--output", default=None, help="FILE.json (default WORKDIR/eval.json)")
    evaluate.add_argument("--split", default="test", help="dataset split for the bound")
    evaluate.add_argument("--max_examples", type=int, default=None)
    evaluate.add_argument("--variance", default=None, help="reverse variance (default: config's)")
    evaluate.add_argument("--ode", action="store_true", help="also the probability-flow ODE NLL")
    evaluate.add_argument("--num_samples", type=int, default=0, help="samples for FID / digits FD")
    evaluate.add_argument("--sampler", default=None)
    evaluate.add_argument("--steps", type=int, default=None)
    evaluate.add_argument("--fid_stats", default=None, help="reference FID statistics (.npz)")
    stats = sub.add_parser("stats", help="FID reference statistics of a dataset")
    stats.add_argument("--dataset", required=True)
    stats.add_argument("--split", default="train")
    stats.add_argument("--output", required=True, help="FILE.npz")
    stats.add_argument("--weights", default=None, help="FID Inception weights (.pth or .npz)")
    stats.add_argument("--download", action="store_true", help="fetch the weights if missing")
    stats.add_argument("--batch_size", type=int, default=200)
    return parser


def _train(args, overrides: dict[str, str]) -> int:
    from jaxdiff import checkpoint, train

    if args.config is None and args.workdir and (Path(args.workdir) / checkpoint.CONFIG_FILE).is_file():
        config = checkpoint.load_config(args.workdir)  # resume with the run's own config
    else:
        config = load_config_file(args.config or _DEFAULT_CONFIG)
    apply_overrides(config, overrides)
    workdir = Path(args.workdir or Path("runs") / config.name)
    try:
        train.train(config, workdir)
    except train.Interrupted as e:
        return 128 + int(e.args[0])
    return 0


def _new_file(path: Path, what: str) -> Path:
    if path.exists():
        raise UsageError(f"{what} {path} exists; not overwriting it (choose another --output)")
    if not path.parent.is_dir():
        raise UsageError(f"directory of {what} {path} does not exist")
    return path


def _sample(args) -> int:
    import jax

    from jaxdiff import data, train

    output = Path(args.output or Path(args.workdir) / "samples.npz")
    if output.suffix != ".npz":
        raise UsageError(f"--output must end in .npz, got {output}")
    if args.num < 1:
        raise UsageError(f"--num must be positive, got {args.num}")
    _new_file(output, "output")
    grid_path = _new_file(output.with_suffix(".png"), "grid")
    run = _load(args.workdir)
    sampler = args.sampler or run.config.sampling.sampler
    sample = train.build_sampler(run.config, run.experiment, sampler=sampler, num_steps=args.steps)
    fn = jax.jit(lambda v, rng: sample(v, rng, args.num))
    x = jax.device_get(fn(run.variables, jax.random.PRNGKey(args.seed)))
    samples = data.to_uint8(x) if x.ndim == 4 else x  # images as uint8; points as floats
    tmp = output.with_name(f".{output.name}.tmp.npz")
    np.savez(tmp, samples=samples)
    data.save_samples_png(x, grid_path)
    tmp.replace(output)
    print(f"wrote {output} ({samples.dtype} {samples.shape}) and {grid_path}")
    return 0


def _load(workdir):
    from jaxdiff import train

    try:
        return train.load_run(workdir)
    except FileNotFoundError as e:
        raise UsageError(str(e)) from e


def _eval(args) -> int:
    output = Path(args.output or Path(args.workdir) / "eval.json")
    _new_file(output, "output")
    from jaxdiff import evaluate

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
    )
    output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {output}")
    return 0


def _stats(args) -> int:
    output = _new_file(Path(args.output), "output")
    if output.suffix != ".npz":
        raise UsageError(f"--output must end in .npz, got {output}")
    from jaxdiff.metrics import fid

    variables = fid.load_inception(args.weights, download=args.download)
    result = fid.dataset_statistics(
        args.dataset,
        split=args.split,
        variables=variables,
        output=output,
        batch_size=args.batch_size,
    )
    print(f"wrote {output}: {result.num} examples, {result.mu.shape[0]}-d features")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``jaxdiff``; returns the exit code (2 for bad input)."""
    from_command_line = argv is None
    argv = sys.argv[1:] if argv is None else argv
    args, rest = _parser().parse_known_args(argv)
    # orbax reports through absl logging, with tracebacks, what it also raises; the CLI turns
    # those errors into one line each
    logging.getLogger("absl").setLevel(logging.CRITICAL)
    from jaxdiff import checkpoint, data, train
    from jaxdiff._io import OutputWriteError

    try:
        if args.command == "train":
            return _train(args, _split_overrides(rest))
        if rest:
            raise UsageError(f"unrecognized arguments: {' '.join(rest)}")
        return {"sample": _sample, "eval": _eval, "stats": _stats}[args.command](args)
    except (
        UsageError,
        data.DataError,
        checkpoint.IncompatibleWorkdirError,
        FileNotFoundError,
        ValueError,
    ) as e:
        print(f"jaxdiff {args.command}: error: {e}", file=sys.stderr)
        return 2
    except train.TrainingError as e:
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


if __name__ == "__main__":
    sys.exit(main())
