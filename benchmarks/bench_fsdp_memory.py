"""Per-device memory of the training step, replicated state vs FSDP, by XLA's memory analysis.

Compiles jaxdiff's training step (``jaxdiff.train.make_train_step``) of a config's model on a
mesh of N devices twice -- the state (parameters, Adam moments, EMA) replicated, and sharded
along the ``"data"`` axis (``config.sharding.fsdp``) -- and prints, per device, the bytes of the
step's arguments (the state and this device's part of the batch), its temporaries and its
peak, from ``compiled.memory_analysis()``. Nothing is run, so simulated CPU devices give the
figures of the same program's buffers (the CPU and GPU backends assign buffers alike, though
not identically)::

    XLA_FLAGS=--xla_force_host_platform_device_count=8 JAX_PLATFORMS=cpu \\
        python benchmarks/bench_fsdp_memory.py --config cifar10_ddpm --batch 128   # 1.5 min on 2 CPUs
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import jax
import jax.numpy as jnp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from jaxdiff import cli, sharding, train  # noqa: E402


def step_memory(config, data_shape, *, batch: int, fsdp: bool, model_parallel: int = 1, min_size: int = 1024) -> dict:
    """Per-device bytes of the compiled step of ``config``'s model on all devices."""
    experiment = train.build_experiment(config, data_shape=data_shape)
    mesh = sharding.make_mesh(model_parallel=model_parallel)
    key = jax.random.PRNGKey(0)
    state = jax.eval_shape(lambda k: train.initial_state(experiment, k, rng=k), key)
    shardings = sharding.state_shardings(state, mesh, fsdp=fsdp, min_size=min_size)
    step = train.make_train_step(experiment, mesh, ema=0.9999, ema_warmup=False, state_sharding=shardings)
    images = jax.ShapeDtypeStruct((batch, *data_shape), jnp.uint8)
    m = step.lower(state, {"x": images}).compile().memory_analysis()
    return {
        "devices": mesh.size,
        "mesh": dict(mesh.shape),
        "fsdp": fsdp,
        "state_bytes_total": sum(a.size * a.dtype.itemsize for a in jax.tree.leaves(state)),
        "argument_bytes": m.argument_size_in_bytes,
        "output_bytes": m.output_size_in_bytes,
        "temp_bytes": m.temp_size_in_bytes,
        "peak_bytes": m.peak_memory_in_bytes,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="cifar10_ddpm")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--data_shape", default="32,32,3", help="one example's shape")
    parser.add_argument("--model_parallel", type=int, default=1)
    args = parser.parse_args(argv)
    config = cli.load_config_file(args.config)
    shape = tuple(int(n) for n in args.data_shape.split(","))
    rows = [
        step_memory(config, shape, batch=args.batch, fsdp=fsdp, model_parallel=args.model_parallel)
        for fsdp in (False, True)
    ]
    print(json.dumps({"config": args.config, "batch": args.batch, "jax": jax.__version__, "runs": rows}, indent=2))


if __name__ == "__main__":
    main()
