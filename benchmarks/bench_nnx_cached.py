"""Per-call time of DDIM-10 with a new ``nnx.Module`` of the same graph each call (its state an
argument of the cached program) against a closure over each module (compiled anew per call),
in one run: the NNX MLP on 256 two-dimensional points, T = 1000.

    PYTHONPATH=. python benchmarks/bench_nnx_cached.py
"""

import statistics
import time

import jax
from flax import nnx

from jaxdiff import models, samplers, schedules


def main(num_modules: int = 5):
    schedule = schedules.linear(1000)
    x = jax.random.normal(jax.random.key(0), (256, 2))
    modules = [models.MLP(2, features=64, num_blocks=2, rngs=nnx.Rngs(i)) for i in range(num_modules)]
    calls = {
        "a new module, the cached program": lambda m: samplers.ddim_sample(m, schedule, x, num_steps=10),
        "a closure, compiled per call": lambda m: samplers.ddim_sample(
            lambda x_t, t: m(x_t, t), schedule, x, num_steps=10
        ),
    }
    print(f"jax {jax.__version__}, {jax.devices()[0].platform}")
    for name, call in calls.items():
        tic = time.perf_counter()
        jax.block_until_ready(call(modules[0]))
        first = time.perf_counter() - tic
        times = []
        for module in modules[1:]:
            tic = time.perf_counter()
            jax.block_until_ready(call(module))
            times.append(time.perf_counter() - tic)
        print(f"{name}: first call {first:.3f} s, then median {statistics.median(times):.3f} s/call")


if __name__ == "__main__":
    main()
