"""Time DDIM sampling with the DDPM CIFAR-10 U-Net on this machine's CPU: jaxdiff vs diffusers.

One call is a deterministic DDIM chain (Song et al. 2021, eta = 0) of ``--steps`` (50) network
evaluations of the 35.7M-parameter U-Net of Ho et al. (2020), on a batch of 8 images of
32x32x3, from x_T to x_0. The peer is diffusers' ``UNet2DModel`` (the config of
google/ddpm-cifar10-32) driven by ``DDIMScheduler`` (linear betas, "leading" timesteps
980, 960, ..., 0, the last step onto alpha_bar = 1, no clipping) in the loop of
``DDIMPipeline``, under ``torch.inference_mode``. Both hold the same random weights (PyTorch's
initialisation, converted by :func:`jaxdiff.models.from_diffusers`), and their samples from
one x_T are compared before anything is timed.

jaxdiff's first call traces and compiles the whole chain (one ``lax.scan``); that time is
shown apart (XLA's tracing, lowering and compilation, from ``jax.monitoring``). Then the rounds
alternate between the two frameworks: the whole chain, and the network's forward pass alone
at the same batch, so that the chain's overhead beyond ``steps`` forward passes shows. Prints
a table, then one line of JSON.

Needs torch and diffusers beside jaxdiff (not dependencies of jaxdiff)::

    pip install torch==2.13.0 diffusers
    python benchmarks/bench_sampling.py [--rounds 5] [--warmup 1] [--batch 8] [--steps 50]
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np
import torch
from flax import nnx
from _peer import alternate, diffusers_cifar10, machine, machine_line, summary, to_nchw
from diffusers import DDIMScheduler

from jaxdiff import schedules
from jaxdiff.models import from_diffusers
from jaxdiff.models.convert import DDPM_CIFAR10_CONFIG
from jaxdiff.samplers import ddim_sample

_COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
)
_compile_seconds = []
jax.monitoring.register_event_duration_secs_listener(
    lambda event, secs, **_: _compile_seconds.append(secs) if event in _COMPILE_EVENTS else None
)


def diffusers_ddim(net, num_steps: int):
    """x_T (NCHW tensor) -> x_0 by diffusers' DDIM with eta = 0, the loop of ``DDIMPipeline``."""
    scheduler = DDIMScheduler(
        num_train_timesteps=1000,
        beta_start=1e-4,
        beta_end=0.02,
        beta_schedule="linear",
        clip_sample=False,
        set_alpha_to_one=True,
        steps_offset=0,
        timestep_spacing="leading",
    )
    scheduler.set_timesteps(num_steps)

    @torch.inference_mode()
    def sample(x):
        for t in scheduler.timesteps:
            eps = net(x, t).sample
            x = scheduler.step(eps, t, x, eta=0.0).prev_sample
        return x

    return sample


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds per framework")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds after compilation")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=50, help="DDIM steps (network evaluations)")
    parser.add_argument(
        "--rtol", type=float, default=1e-4, help="largest relative RMS difference of the samples"
    )
    args = parser.parse_args()

    net = diffusers_cifar10().eval()
    model = from_diffusers(
        {name: p.detach().numpy() for name, p in net.state_dict().items()}, DDPM_CIFAR10_CONFIG
    )
    graphdef, variables = nnx.split(model)
    rng = np.random.default_rng(0)
    x_T = rng.standard_normal((args.batch, 32, 32, 3)).astype(np.float32)  # NHWC
    t_mid = np.full((args.batch,), 500, np.int32)

    # jaxdiff: the chain, and the network's forward pass alone
    schedule = schedules.linear()
    model_fn = model
    jx_T, jt = jnp.asarray(x_T), jnp.asarray(t_mid)
    forward = jax.jit(lambda state, x, t: nnx.merge(graphdef, state)(x, t))

    start = time.perf_counter()
    x0_jax = np.asarray(ddim_sample(model_fn, schedule, jx_T, num_steps=args.steps))
    first_call_s = time.perf_counter() - start
    compile_s = sum(_compile_seconds)
    forward(variables, jx_T, jt).block_until_ready()

    # diffusers, NCHW
    torch_sample = diffusers_ddim(net, args.steps)
    tx_T, tt = to_nchw(x_T), torch.from_numpy(t_mid.astype(np.int64))
    x0_torch = torch_sample(tx_T).numpy().transpose(0, 2, 3, 1)
    rel_rms = float(np.sqrt(np.mean((x0_jax - x0_torch) ** 2) / np.mean(x0_torch**2)))
    if not rel_rms <= args.rtol:
        raise SystemExit(
            f"the samplers disagree: relative RMS difference {rel_rms:.2e} > --rtol {args.rtol}"
        )

    def torch_forward():
        with torch.inference_mode():
            net(tx_T, tt)

    runs = {
        "jaxdiff chain": lambda: ddim_sample(
            model_fn, schedule, jx_T, num_steps=args.steps
        ).block_until_ready(),
        "diffusers chain": lambda: torch_sample(tx_T),
        "jaxdiff forward": lambda: forward(variables, jx_T, jt).block_until_ready(),
        "diffusers forward": torch_forward,
    }
    info = machine()  # the load before the timed rounds ...
    times = alternate(runs, rounds=args.rounds, warmup=args.warmup)
    load_after = [round(x, 2) for x in machine()["load_avg"]]  # ... and after them
    stats = {name: summary(ts) for name, ts in times.items()}
    med = {name: s["median_s"] for name, s in stats.items()}
    overhead = {
        fw: med[f"{fw} chain"] / args.steps - med[f"{fw} forward"] for fw in ("jaxdiff", "diffusers")
    }
    result = {
        "benchmark": f"DDIM-{args.steps}, eta 0, DDPM CIFAR-10 U-Net, batch {args.batch}, 32x32x3",
        "machine": info,
        "load_avg_after": load_after,
        "rounds": args.rounds,
        "relative_rms_difference": rel_rms,
        "jaxdiff_compile_s": compile_s,
        "jaxdiff_first_call_s": first_call_s,
        "times": stats,
        "step_overhead_s": overhead,
        "ratio_chain": med["jaxdiff chain"] / med["diffusers chain"],
        "ratio_forward": med["jaxdiff forward"] / med["diffusers forward"],
    }

    print(machine_line(info) + f"; after: {', '.join(map(str, load_after))}")
    print(f"{result['benchmark']}; samples agree to {rel_rms:.1e} (relative RMS)")
    print(
        f"jaxdiff first call {first_call_s:.1f} s, of which tracing + compilation {compile_s:.1f} s"
    )
    print(f"medians of {args.rounds} alternating rounds (min-max), seconds:")
    print(f"  {'':22} {'chain':>22} {'forward alone':>22} {'per-step overhead':>18}")
    for fw, name in (("jaxdiff", "jaxdiff (JAX/XLA)"), ("diffusers", "diffusers (PyTorch)")):
        cells = [
            f"{stats[f'{fw} {part}']['median_s']:7.3f} "
            f"({stats[f'{fw} {part}']['min_s']:.3f}-{stats[f'{fw} {part}']['max_s']:.3f})"
            for part in ("chain", "forward")
        ]
        print(f"  {name:22} {cells[0]:>22} {cells[1]:>22} {overhead[fw]:18.4f}")
    print(
        f"  ratio jaxdiff / diffusers: chain {result['ratio_chain']:.2f}, "
        f"forward {result['ratio_forward']:.2f}"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
