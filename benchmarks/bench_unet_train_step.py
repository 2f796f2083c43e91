"""Time one training step of the DDPM CIFAR-10 U-Net on this machine's CPU: jaxdiff vs diffusers.

One step is a forward pass (train mode, dropout 0.1), the backward pass and an Adam update of
the 35.7M-parameter network of Ho et al. (2020), on a batch of 8 images of 32x32x3 with an
epsilon-prediction MSE loss. The same network is built in diffusers (``UNet2DModel`` with the
config of google/ddpm-cifar10-32) and trained with ``torch.optim.Adam`` in the same run. The
rounds alternate between the two frameworks; after warm-up (and, for JAX, compilation) the
median of the timed steps is printed with the ratio, and likewise for the forward pass alone
(the loss in train mode, without gradients), so that the backward pass's share shows.

Needs torch and diffusers beside jaxdiff (not dependencies of jaxdiff)::

    pip install torch==2.13.0 diffusers
    python benchmarks/bench_unet_train_step.py [--steps 10] [--batch 8]
"""

import argparse
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch
from flax import nnx
from _peer import alternate, diffusers_cifar10, machine, machine_line, summary, to_nchw

from jaxdiff.models import ddpm_cifar10

LEARNING_RATE = 2e-4


def jax_step_fn(batch, key):
    """A jitted jaxdiff train step over (params, opt_state, x, t, eps, key), the jitted loss alone
    over (params, x, t, eps, key), and the initial state."""
    cpu = jax.default_backend() == "cpu"
    model = ddpm_cifar10(matmul_kernel_grad=cpu, rngs=nnx.Rngs(key))  # models/conv.py
    optimizer = optax.adam(LEARNING_RATE)
    graphdef, params = nnx.split(model)  # the graph static, the state an argument
    opt_state = optimizer.init(params)

    def loss_fn(params, x, t, eps, key):
        out = nnx.merge(graphdef, params)(x, t, train=True, rngs=nnx.Rngs(dropout=key))
        return jnp.mean((out - eps) ** 2)

    @functools.partial(jax.jit, donate_argnums=(0, 1))  # update params and Adam state in place
    def step(params, opt_state, x, t, eps, key):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, t, eps, key)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return step, jax.jit(loss_fn), params, opt_state


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10, help="timed steps per framework")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps after compilation")
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (args.batch, 32, 32, 3)).astype(np.float32)  # NHWC
    eps = rng.standard_normal(x.shape).astype(np.float32)
    t = rng.integers(0, 1000, args.batch).astype(np.int32)

    # jaxdiff
    key = jax.random.key(0)
    start = time.perf_counter()
    step, loss_only, params, opt_state = jax_step_fn(args.batch, key)
    init_s = time.perf_counter() - start
    jx, jt, jeps = jnp.asarray(x), jnp.asarray(t), jnp.asarray(eps)
    state = {"params": params, "opt": opt_state, "key": key}

    def jax_run():
        state["key"], dropout_key = jax.random.split(state["key"])
        state["params"], state["opt"], loss = step(
            state["params"], state["opt"], jx, jt, jeps, dropout_key
        )
        loss.block_until_ready()

    def jax_forward():
        loss_only(state["params"], jx, jt, jeps, key).block_until_ready()

    start = time.perf_counter()
    jax_run()
    compile_s = time.perf_counter() - start

    # diffusers / PyTorch, NCHW
    net = diffusers_cifar10().train()
    adam = torch.optim.Adam(net.parameters(), lr=LEARNING_RATE)
    tx, teps, tt = to_nchw(x), to_nchw(eps), torch.from_numpy(t.astype(np.int64))

    def torch_run():
        adam.zero_grad(set_to_none=True)
        loss = torch.mean((net(tx, tt).sample - teps) ** 2)
        loss.backward()
        adam.step()

    def torch_forward():
        with torch.no_grad():
            torch.mean((net(tx, tt).sample - teps) ** 2)

    runs = {
        "jaxdiff (JAX/XLA)": jax_run,
        "diffusers (PyTorch)": torch_run,
        "jaxdiff forward": jax_forward,
        "diffusers forward": torch_forward,
    }
    times = alternate(runs, rounds=args.steps, warmup=args.warmup)
    ms = {name: {k: 1e3 * v for k, v in summary(ts).items()} for name, ts in times.items()}
    n_jax = sum(p.size for p in jax.tree.leaves(state["params"]))
    n_torch = sum(p.numel() for p in net.parameters())
    print(machine_line(machine()))
    print(
        f"DDPM CIFAR-10 U-Net, {n_jax:,} parameters (diffusers: {n_torch:,}); batch {args.batch}, 32x32x3"
    )
    print(f"jaxdiff init {init_s:.1f} s, first step (compilation) {compile_s:.1f} s")
    print(f"one train step, median of {args.steps} (min-max):")
    for name in ("jaxdiff (JAX/XLA)", "diffusers (PyTorch)"):
        m = ms[name]
        print(f"  {name:22} {m['median_s']:8.1f} ms  ({m['min_s']:.1f}-{m['max_s']:.1f})")
    jax_ms, torch_ms = ms["jaxdiff (JAX/XLA)"]["median_s"], ms["diffusers (PyTorch)"]["median_s"]
    print(f"  ratio jaxdiff / diffusers = {jax_ms / torch_ms:.2f}")
    jax_fwd_ms, torch_fwd_ms = ms["jaxdiff forward"]["median_s"], ms["diffusers forward"]["median_s"]
    print(f"forward pass alone (train-mode loss, no gradients), median of {args.steps}:")
    print(f"  jaxdiff (JAX/XLA)      {jax_fwd_ms:8.1f} ms")
    print(f"  diffusers (PyTorch)    {torch_fwd_ms:8.1f} ms")
    print(f"  ratio jaxdiff / diffusers = {jax_fwd_ms / torch_fwd_ms:.2f}")


if __name__ == "__main__":
    main()
