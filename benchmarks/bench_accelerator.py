"""Throughput of the DDPM CIFAR-10 model on one accelerator: the training step and DDIM sampling.

Times jaxdiff's own compiled training step (``jaxdiff.train.make_train_step``: forward,
backward, Adam, EMA) of the 35.7M-parameter U-Net of Ho et al. (2020) on a batch of 128
32x32x3 images, in float32 and in bfloat16 compute, and DDIM sampling with 50 steps (Song et
al. 2021) of 256 images, on one device. Prints one JSON object:

* ``steps_per_s`` (sampling: ``chains_per_s`` and ``network_evals_per_s``) and
  ``images_per_s``: medians over ``--repeats`` rounds of ``--steps`` calls, after compilation
  and one untimed call;
* ``flops_per_call`` from XLA's cost analysis of the compiled program, and ``mfu``, the model
  FLOP utilisation ``flops_per_call * calls_per_s / peak``, against the device's peak FLOP/s
  for the compute dtype (:data:`PEAK_FLOPS`; ``null`` for a device not in the table, the CPU
  included). XLA counts the body of a loop once, so the sampler's figure is ``num_steps``
  times the FLOPs of one compiled network evaluation at the sampling batch;
* ``peak_bytes``: the compiled program's peak memory (XLA's memory analysis) and, where the
  runtime reports it (GPU, TPU), the device's peak bytes in use so far;
* ``compile_s``: the time to lower and compile.

Ho et al. (2020, App. B) report 21 steps/s at batch 128 on a TPU v3-8 (8 cores); the JSON
gives the ratio to that figure.

    python benchmarks/bench_accelerator.py                 # on the default device (a GPU/TPU)
    python benchmarks/bench_accelerator.py --tiny          # a small U-Net on 8x8 images, seconds on CPU

On an NVIDIA GPU, install jax with CUDA (``pip install -U "jax[cuda12]"``) before the
editable install of jaxdiff.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from jaxdiff import cli, train  # noqa: E402

# Ho et al. (2020), App. B: the CIFAR-10 model trained at 21 steps/s, batch 128, on a TPU v3-8.
HO2020_STEPS_PER_S = 21.0

# Dense peak FLOP/s of one JAX device, by compute dtype, from the vendors' data sheets. float32
# matrix products run on tensor cores as TF32 under JAX's default precision on Ampere and later
# GPUs, and as one bfloat16 pass on TPUs, so their float32 peak is that of those units. A TPU v3
# device is one of the chip's two cores (123 TFLOP/s per chip); a v4 or v5e device is a chip.
# The first entry whose key is in the lowercased ``device_kind`` applies.
PEAK_FLOPS = {
    "h100 pcie": {"bfloat16": 756e12, "float32": 378e12},
    "h100": {"bfloat16": 989.4e12, "float32": 494.7e12},
    "h200": {"bfloat16": 989.4e12, "float32": 494.7e12},
    "gh200": {"bfloat16": 989.4e12, "float32": 494.7e12},
    "a100": {"bfloat16": 312e12, "float32": 156e12},
    "l4": {"bfloat16": 121e12, "float32": 60e12},
    "tpu v3": {"bfloat16": 61.5e12, "float32": 61.5e12},
    "tpu v4": {"bfloat16": 275e12, "float32": 275e12},
    "tpu v5 lite": {"bfloat16": 197e12, "float32": 197e12},
    "tpu v6 lite": {"bfloat16": 918e12, "float32": 918e12},
}


def peak_flops(device_kind: str, dtype: str) -> float | None:
    """The device's dense peak FLOP/s for ``dtype`` compute, or None when it is not known."""
    kind = device_kind.lower()
    for key, peaks in PEAK_FLOPS.items():
        if key in kind:
            return peaks[dtype]
    return None


def compiled_flops(compiled) -> float:
    """FLOPs of one call of a compiled program, by XLA's cost analysis (a loop body counts once)."""
    analysis = compiled.cost_analysis()
    if isinstance(analysis, (list, tuple)):  # older jax: one dict per program
        analysis = analysis[0]
    return float(analysis["flops"])


def peak_bytes(compiled, device) -> dict:
    """Peak memory: of the compiled program (XLA's buffer assignment) and, where the runtime
    keeps the statistic, of the device since the process started."""
    stats = device.memory_stats() or {}
    return {
        "program": int(compiled.memory_analysis().peak_memory_in_bytes),
        "device": stats.get("peak_bytes_in_use"),
    }


def compile_timed(fn, *args):
    """``fn.lower(*args).compile()`` and the seconds it took."""
    start = time.perf_counter()
    compiled = fn.lower(*args).compile()
    return compiled, time.perf_counter() - start


def median_call_time(call, *, steps: int, repeats: int) -> float:
    """Seconds per call: the median over ``repeats`` rounds of ``steps`` calls (one untimed call first)."""
    jax.block_until_ready(call())
    rounds = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            out = call()
        jax.block_until_ready(out)
        rounds.append((time.perf_counter() - start) / steps)
    return statistics.median(rounds)


def throughput(
    seconds: float, *, batch: int, flops: float, peak: float | None, calls: str = "steps"
) -> dict:
    """Calls/s (named ``<calls>_per_s``), images/s and the model FLOP utilisation of a program
    of ``batch`` images that takes ``seconds`` per call."""
    rate = 1.0 / seconds
    return {
        f"{calls}_per_s": rate,
        "images_per_s": batch * rate,
        "flops_per_call": flops,
        "peak_flops": peak,
        "mfu": None if peak is None else flops * rate / peak,
    }


def experiment_config(*, tiny: bool, dtype: str):
    """The CIFAR-10 config of Ho et al. (2020), or a small U-Net on 8x8x1 images (``tiny``)."""
    config = cli.load_config_file("digits_ddpm" if tiny else "cifar10_ddpm")
    config.model.dtype = dtype
    if tiny:  # one level of 8 channels: compiles in seconds
        config.model.update(ch=8, ch_mult=(1,), num_res_blocks=1)
    return config, ((8, 8, 1) if tiny else (32, 32, 3))


def bench_train(config, data_shape, device, *, batch: int, steps: int, repeats: int) -> dict:
    """The training step of a run, compiled for one device, timed on a fixed random batch."""
    experiment = train.build_experiment(config, data_shape=data_shape)
    step_fn = train.make_train_step(
        experiment, Mesh(np.array([device]), ("data",)), ema=0.9999, ema_warmup=False
    )
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    state = train.initial_state(experiment, keys[0], rng=keys[1])
    images = jax.random.randint(keys[2], (batch, *data_shape), 0, 256).astype(jnp.uint8)
    compiled, compile_s = compile_timed(step_fn, state, {"x": images})
    seconds = median_call_time(lambda: compiled(state, {"x": images}), steps=steps, repeats=repeats)
    peak = peak_flops(device.device_kind, config.model.dtype)
    return {
        "batch": batch,
        **throughput(seconds, batch=batch, flops=compiled_flops(compiled), peak=peak),
        "compile_s": compile_s,
        "peak_bytes": peak_bytes(compiled, device),
        "vs_ho2020_tpu_v3_8": batch / seconds / (128 * HO2020_STEPS_PER_S),
    }


def bench_sample(config, data_shape, device, *, batch: int, num_steps: int, repeats: int) -> dict:
    """DDIM with ``num_steps`` steps (``jaxdiff.train.build_sampler``), timed per whole chain."""
    experiment = train.build_experiment(config, data_shape=data_shape)
    sample = train.build_sampler(config, experiment, sampler="ddim", num_steps=num_steps)
    key = jax.random.PRNGKey(0)
    variables = jax.device_put(
        {"params": train.initial_state(experiment, key, rng=key).ema_params}, device
    )
    chain = jax.jit(lambda v, rng: sample(v, rng, batch))
    compiled, compile_s = compile_timed(chain, variables, key)
    x = jax.device_put(jnp.zeros((batch, *data_shape)), device)
    t = jax.device_put(jnp.zeros((batch,), jnp.int32), device)
    network = jax.jit(experiment.model.apply).lower(variables, x, t).compile()
    seconds = median_call_time(lambda: compiled(variables, key), steps=1, repeats=repeats)
    peak = peak_flops(device.device_kind, config.model.dtype)
    flops = num_steps * compiled_flops(network)
    return {
        "batch": batch,
        "num_steps": num_steps,
        **throughput(seconds, batch=batch, flops=flops, peak=peak, calls="chains"),
        "network_evals_per_s": num_steps / seconds,
        "compile_s": compile_s,
        "peak_bytes": peak_bytes(compiled, device),
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="small U-Net on 8x8 images (CPU, seconds)")
    parser.add_argument("--batch", type=int, default=None, help="training batch (128; tiny 8)")
    parser.add_argument("--sample_batch", type=int, default=None, help="sampling batch (256; tiny 16)")
    parser.add_argument("--sample_steps", type=int, default=50, help="DDIM steps")
    parser.add_argument("--steps", type=int, default=None, help="timed train steps per round (20; tiny 3)")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds; the median is reported")
    parser.add_argument("--dtypes", default="float32,bfloat16", help="compute dtypes, comma-separated")
    args = parser.parse_args(argv)
    batch = args.batch or (8 if args.tiny else 128)
    sample_batch = args.sample_batch or (16 if args.tiny else 256)
    steps = args.steps or (3 if args.tiny else 20)
    device = jax.devices()[0]
    result = {
        "device": {"platform": device.platform, "kind": device.device_kind},
        "jax": jax.__version__,
        "host": platform.node(),
        "model": "digits_ddpm, ch 8, one level (tiny)" if args.tiny else "cifar10_ddpm (Ho et al. 2020, 35.7M)",
        "train": {},
        "sample_ddim": {},
    }
    for dtype in args.dtypes.split(","):
        config, shape = experiment_config(tiny=args.tiny, dtype=dtype)
        result["train"][dtype] = bench_train(
            config, shape, device, batch=batch, steps=steps, repeats=args.repeats
        )
        result["sample_ddim"][dtype] = bench_sample(
            config, shape, device, batch=sample_batch, num_steps=args.sample_steps, repeats=args.repeats
        )
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
