"""The CIFAR-10 U-Net's train step and DDIM-50 chain: the NNX module against its linen
predecessor (jaxdiff 0.2, loaded from a source folder) and against diffusers, in one run.

The NNX and linen networks hold the same weights (the NNX state is the linen parameter tree);
diffusers' ``UNet2DModel`` (config of google/ddpm-cifar10-32) holds PyTorch's random ones. A train
step is the forward pass in train mode (dropout 0.1), the backward pass and an Adam update on a
batch of ``--batch`` 32x32x3 images (eps-prediction MSE; ``torch.optim.Adam`` for diffusers);
DDIM-50 is :func:`jaxdiff.samplers.ddim_sample` for the two JAX networks and diffusers' own
``DDIMScheduler`` loop. The first call of each (for JAX, the compilation) is timed apart, with
JAX's tracing and XLA compile seconds; then the rounds call the six in turn (``--order``), so
that the load of a shared machine falls on each alike, and the medians of wall-clock and process
CPU time are printed with the ratios. (That the two JAX networks give the same outputs for the
same weights is tests/test_nnx_equivalence.py's check.)

Needs torch and diffusers beside jaxdiff (not dependencies of jaxdiff)::

    git archive 142c234 jaxdiff | tar -x -C /tmp/linen      # the last linen U-Net
    PYTHONPATH=. python benchmarks/bench_nnx_vs_linen.py /tmp/linen/jaxdiff [--batch 2]
"""

import argparse
import functools
import importlib.util
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch
from _peer import diffusers_cifar10, machine, machine_line, to_nchw
from bench_sampling import diffusers_ddim
from flax import nnx

from jaxdiff import samplers, schedules
from jaxdiff.models import ddpm_cifar10

LEARNING_RATE = 2e-4
_TRACE_EVENT = "/jax/core/compile/jaxpr_trace_duration"
_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
_events = []
jax.monitoring.register_event_duration_secs_listener(
    lambda event, secs, **_: _events.append((event, secs))
)


def _linen_unet(src):
    spec = importlib.util.spec_from_file_location("linen_unet", f"{src}/models/unet.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["linen_unet"] = module
    spec.loader.exec_module(module)
    return module


def _jax_step(apply, tx):
    """A jitted Adam step of the eps MSE; ``apply(params, x, t, key)`` is the network."""

    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def step(params, opt_state, x, t, eps, key):
        loss, grads = jax.value_and_grad(
            lambda p: jnp.mean((apply(p, x, t, key) - eps) ** 2)
        )(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return step


def _jax_runs(name, apply, params, model_fn, x, t, eps, key, num_steps):
    """``{"<name> train step": run, "<name> DDIM-<n>": run}``, each blocking on its result."""
    tx = optax.adam(LEARNING_RATE)
    step = _jax_step(apply, tx)
    box = {"p": jax.tree.map(jnp.copy, params), "o": tx.init(params)}

    def train():
        box["p"], box["o"], loss = step(box["p"], box["o"], x, t, eps, key)
        loss.block_until_ready()

    def ddim():
        samplers.ddim_sample(model_fn, schedules.linear(), x, num_steps=num_steps).block_until_ready()

    return {f"{name} train step": train, f"{name} DDIM-{num_steps}": ddim}


def _torch_runs(x, t, eps, num_steps):
    net = diffusers_cifar10()
    adam = torch.optim.Adam(net.parameters(), lr=LEARNING_RATE)
    tx, teps, tt = to_nchw(x), to_nchw(eps), torch.from_numpy(t.astype(np.int64))
    sample = diffusers_ddim(net, num_steps)

    def train():
        net.train()
        adam.zero_grad(set_to_none=True)
        torch.mean((net(tx, tt).sample - teps) ** 2).backward()
        adam.step()

    def ddim():
        net.eval()
        sample(tx)

    return {"diffusers train step": train, f"diffusers DDIM-{num_steps}": ddim}


def _timed(run):
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    return time.perf_counter() - wall, time.process_time() - cpu


def _first_call(run) -> str:
    """The first call's wall time, with JAX's tracing and XLA compile seconds in it."""
    del _events[:]
    wall, _ = _timed(run)
    trace = sum(s for e, s in _events if e == _TRACE_EVENT)
    xla = sum(s for e, s in _events if e == _COMPILE_EVENT)
    return f"{wall:.1f} s" + (f" (trace {trace:.1f} s, XLA compile {xla:.1f} s)" if _events else "")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("linen_src")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--ddim_steps", type=int, default=50)
    parser.add_argument("--order", default="nnx,linen,diffusers",
                        help="the contenders' order in the first calls and in each round")
    args = parser.parse_args()
    cpu = jax.default_backend() == "cpu"
    linen = _linen_unet(args.linen_src)
    lin_model = linen.UNet(ch=128, ch_mult=(1, 2, 2, 2), num_res_blocks=2,
                           attn_resolutions=(16,), dropout=0.1, matmul_kernel_grad=cpu)
    model = ddpm_cifar10(matmul_kernel_grad=cpu, rngs=nnx.Rngs(0))
    graphdef, state = nnx.split(model)
    lin_params = nnx.to_pure_dict(state)  # the same weights under linen's names

    rng = np.random.default_rng(0)
    x_np = rng.uniform(-1, 1, (args.batch, 32, 32, 3)).astype(np.float32)
    eps_np = rng.standard_normal(x_np.shape).astype(np.float32)
    t_np = rng.integers(0, 1000, args.batch).astype(np.int32)
    x, eps, t = jnp.asarray(x_np), jnp.asarray(eps_np), jnp.asarray(t_np)
    key = jax.random.key(1)

    def nnx_apply(params, x, t, key):
        return nnx.merge(graphdef, params)(x, t, train=True, rngs=nnx.Rngs(dropout=key))

    def linen_apply(params, x, t, key):
        return lin_model.apply({"params": params}, x, t, train=True, rngs={"dropout": key})

    n = args.ddim_steps
    contenders = {
        "nnx": lambda: _jax_runs("nnx", nnx_apply, state, model, x, t, eps, key, n),
        "linen": lambda: _jax_runs(
            "linen", linen_apply, lin_params,
            functools.partial(lin_model.apply, {"params": lin_params}), x, t, eps, key, n),
        "diffusers": lambda: _torch_runs(x_np, t_np, eps_np, n),
    }
    runs = {}
    for who in args.order.split(","):
        runs.update(contenders[who]())
    first = {label: _first_call(run) for label, run in runs.items()}
    wall = {label: [] for label in runs}
    proc = {label: [] for label in runs}
    for i in range(args.rounds):
        for label, run in runs.items():
            w, c = _timed(run)
            wall[label].append(w)
            proc[label].append(c)
        print(f"round {i + 1}/{args.rounds}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in wall.items()),
              file=sys.stderr, flush=True)

    print(f"{machine_line(machine())}")
    print(f"DDPM CIFAR-10 U-Net, batch {args.batch} of 32x32x3; medians of {args.rounds} rounds "
          f"(contenders in turn: {args.order})")
    for what in ("train step", f"DDIM-{n}"):
        med = {who: statistics.median(wall[f"{who} {what}"]) for who in ("nnx", "linen", "diffusers")}
        cpu_s = {who: statistics.median(proc[f"{who} {what}"]) for who in ("nnx", "linen", "diffusers")}
        print(f"{what}: wall NNX {med['nnx']:.3f} s, linen {med['linen']:.3f} s, diffusers "
              f"{med['diffusers']:.3f} s; NNX/linen {med['nnx'] / med['linen']:.3f}, NNX/diffusers "
              f"{med['nnx'] / med['diffusers']:.3f}")
        print(f"  process CPU NNX {cpu_s['nnx']:.3f} s, linen {cpu_s['linen']:.3f} s, diffusers "
              f"{cpu_s['diffusers']:.3f} s; NNX/linen {cpu_s['nnx'] / cpu_s['linen']:.3f}")
        print(f"  first call NNX {first[f'nnx {what}']}, linen {first[f'linen {what}']}, "
              f"diffusers {first[f'diffusers {what}']}")


if __name__ == "__main__":
    main()
