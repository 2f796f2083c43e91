"""The CIFAR-10 U-Net's train step and DDIM-50 chain, the NNX module against its linen
predecessor (jaxdiff 0.2, loaded from a source folder), in one run on this machine.

Both networks hold the same weights (the linen parameter tree loaded into the NNX state). A
train step is the forward pass in train mode (dropout 0.1), the backward pass and an Adam
update on a batch of ``--batch`` 32x32x3 images (eps-prediction MSE); DDIM-50 is
:func:`jaxdiff.samplers.ddim_sample`. The rounds alternate between the two; the medians after
compilation are printed with their ratio, and the compile times.

    git archive 142c234 jaxdiff | tar -x -C /tmp/linen
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
from flax import nnx

from jaxdiff import samplers, schedules
from jaxdiff.models import ddpm_cifar10


def _linen_unet(src):
    spec = importlib.util.spec_from_file_location("linen_unet", f"{src}/models/unet.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["linen_unet"] = module
    spec.loader.exec_module(module)
    return module


def _step(apply, tx):
    """A jitted Adam step of the eps MSE; ``apply(params, x, t, key)`` is the network."""

    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def step(params, opt_state, x, t, eps, key):
        loss, grads = jax.value_and_grad(
            lambda p: jnp.mean((apply(p, x, t, key) - eps) ** 2)
        )(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return step


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("linen_src")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    cpu = jax.default_backend() == "cpu"
    linen = _linen_unet(args.linen_src)
    lin_model = linen.UNet(ch=128, ch_mult=(1, 2, 2, 2), num_res_blocks=2,
                           attn_resolutions=(16,), dropout=0.1, matmul_kernel_grad=cpu)
    model = ddpm_cifar10(matmul_kernel_grad=cpu, rngs=nnx.Rngs(0))
    graphdef, state = nnx.split(model)
    lin_params = nnx.to_pure_dict(state)  # the same weights, linen's names

    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.uniform(-1, 1, (args.batch, 32, 32, 3)), jnp.float32)
    eps = jnp.asarray(rng.standard_normal(x.shape), jnp.float32)
    t = jnp.asarray(rng.integers(0, 1000, args.batch), jnp.int32)
    key = jax.random.key(1)
    tx = optax.adam(2e-4)

    def nnx_apply(params, x, t, key):
        return nnx.merge(graphdef, params)(x, t, train=True, rngs=nnx.Rngs(dropout=key))

    def linen_apply(params, x, t, key):
        return lin_model.apply({"params": params}, x, t, train=True, rngs={"dropout": key})

    runs, compile_s = {}, {}
    schedule = schedules.linear()
    for name, apply, params, fn in [
        ("nnx", nnx_apply, state, model),
        ("linen", linen_apply, lin_params, functools.partial(lin_model.apply, {"params": lin_params})),
    ]:
        step = _step(apply, tx)
        box = {"p": jax.tree.map(jnp.copy, params), "o": tx.init(params)}

        def train(step=step, box=box):
            box["p"], box["o"], loss = step(box["p"], box["o"], x, t, eps, key)
            loss.block_until_ready()

        def ddim(fn=fn):
            samplers.ddim_sample(fn, schedule, x, num_steps=50).block_until_ready()

        for label, run in ((f"{name} train step", train), (f"{name} DDIM-50", ddim)):
            tic = time.perf_counter()
            run()
            compile_s[label] = time.perf_counter() - tic
            runs[label] = run

    times = {label: [] for label in runs}
    for _ in range(args.rounds):
        for label, run in runs.items():
            tic = time.perf_counter()
            run()
            times[label].append(time.perf_counter() - tic)
    print(f"jax {jax.__version__}, {jax.devices()[0].platform}, batch {args.batch}, "
          f"medians of {args.rounds} alternating rounds")
    for what in ("train step", "DDIM-50"):
        med = {n: statistics.median(times[f"{n} {what}"]) for n in ("nnx", "linen")}
        print(f"{what}: NNX {med['nnx']:.3f} s, linen {med['linen']:.3f} s, "
              f"ratio NNX/linen {med['nnx'] / med['linen']:.3f}; first call (compile) NNX "
              f"{compile_s[f'nnx {what}']:.1f} s, linen {compile_s[f'linen {what}']:.1f} s")


if __name__ == "__main__":
    main()
