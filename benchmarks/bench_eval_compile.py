"""Per-call time of evaluation and sampling with a new parameter set each call: compiled once
(a new ``nnx.Module`` of the same graph each call, its state an argument of one cached
program) against a fresh compilation per call over closed-over parameters (how ``evaluate``,
the feature functions and the samplers worked before), in the same run. Each call evaluates the bound of 64 digits with the digits U-Net (T = 100),
the digits classifier's features of 512 images, or DDIM-10 of 64 digits (T = 1000; the old
path is a new closure per call, a new static argument of the sampler's jit); medians of
``--repeats`` calls after a warm-up.

    python benchmarks/bench_eval_compile.py [--repeats 5]
"""

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxdiff import data, elbo, evaluate, models, samplers, schedules
from jaxdiff.metrics import digits


def _median_time(fn, repeats):
    fn(0)  # warm-up (and the one compilation of the cached path)
    times = []
    for i in range(1, repeats + 1):
        tic = time.perf_counter()
        jax.block_until_ready(fn(i))
        times.append(time.perf_counter() - tic)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    schedule = schedules.linear(100)
    images = np.random.default_rng(0).integers(0, 256, (64, 8, 8, 1), dtype=np.uint8)
    x0 = data.to_model_range(images)
    init = nnx.state(models.ddpm_digits(ch=16, attn_resolutions=(), rngs=nnx.Rngs(0)))

    def make(i):
        """A new U-Net (nnx.Module) of the same graph with other weights."""
        model = models.ddpm_digits(ch=16, attn_resolutions=(), rngs=nnx.Rngs(i))
        nnx.update(model, jax.tree.map(lambda a: a * (1.0 + 0.01 * i), init))
        return model

    modules = [make(i) for i in range(args.repeats + 1)]  # built before the timed calls
    module = modules.__getitem__

    def bound_cached(i):
        return evaluate.nll_per_example(
            module(i), schedule, images, jax.random.key(1), batch_size=64
        )["total"]

    def bound_fresh_jit(i):
        fn = module(i)
        return jax.jit(lambda x: elbo.nll_bpd(fn, schedule, x, jax.random.key(1)))(x0)["total"]

    cls = digits.DigitsClassifier()
    cls_init = cls.init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)))["params"]
    many = np.random.default_rng(1).integers(0, 256, (512, 8, 8, 1), dtype=np.uint8)

    def features_cached(i):
        params = jax.tree.map(lambda a: a * (1.0 + 0.01 * i), cls_init)
        return digits.classify(params, many)["features"]

    def features_fresh_jit(i):
        params = jax.tree.map(lambda a: a * (1.0 + 0.01 * i), cls_init)
        apply = lambda x: cls.apply({"params": params}, data.to_model_range(x))[1]  # noqa: E731
        return jax.jit(apply)(many)

    ddim_schedule = schedules.linear(1000)
    x_T = jax.random.normal(jax.random.key(2), x0.shape)

    def ddim_cached(i):
        return samplers.ddim_sample(module(i), ddim_schedule, x_T, num_steps=10)

    def ddim_fresh_jit(i):
        fn = module(i)
        return samplers.ddim_sample(lambda x, t: fn(x, t), ddim_schedule, x_T, num_steps=10)

    print(f"jax {jax.__version__}, {jax.devices()[0].platform}, medians of {args.repeats} calls")
    for name, cached, fresh in [("bound, 64 digits, T=100", bound_cached, bound_fresh_jit),
                                ("classifier features, 512", features_cached, features_fresh_jit),
                                ("DDIM-10, 64 digits", ddim_cached, ddim_fresh_jit)]:
        c, f = _median_time(cached, args.repeats), _median_time(fresh, args.repeats)
        print(f"{name}: compiled once {c:.3f} s/call, fresh jit per call {f:.3f} s/call ({f / c:.1f}x)")


if __name__ == "__main__":
    main()
