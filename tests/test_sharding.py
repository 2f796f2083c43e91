"""Partition rules, and FSDP against the replicated run on 8 simulated devices."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from jax.sharding import AbstractMesh, PartitionSpec as P

from jaxdiff import sharding

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    "sizes, shape, fsdp, want",
    [
        ((8, 1), (3, 3, 16, 32), True, P(None, None, None, "data")),  # the largest divisible axis
        ((8, 1), (3, 3, 32, 16), True, P(None, None, "data", None)),
        ((8, 1), (64, 64), True, P(None, "data")),  # a tie: the last
        ((8, 1), (3, 3, 16, 32), False, P(None, None, None, None)),  # data parallel: replicated
        ((4, 2), (3, 3, 16, 32), True, P(None, None, "data", "model")),  # output features on "model"
        ((4, 2), (3, 3, 16, 32), False, P(None, None, None, "model")),
        ((4, 2), (36, 3), True, P("data", None)),  # 3 output features: not split along "model"
        ((8, 1), (3, 5, 7), True, P(None, None, None)),  # nothing divisible
        ((8, 1), (8, 8), True, P(None, None)),  # under min_size
        ((8, 1), (), True, P()),
    ],
)
def test_partition_rules(sizes, shape, fsdp, want):
    mesh = AbstractMesh(sizes, ("data", "model"))
    assert sharding.partition_spec(shape, mesh, fsdp=fsdp, min_size=100) == want


_FSDP_SCRIPT = r"""
import jax, numpy as np
from jaxdiff import cli, data, sharding, train
assert jax.device_count() == 8
config = cli.load_config_file("configs/toy2d_ddpm.py")
cli.apply_overrides(config, {"model.features": "64", "model.num_blocks": "1", "model.dropout": "0.1"})
exp = train.build_experiment(config, data_shape=(2,))
batches = data.Batches(data.swiss_roll(), batch_size=16, seed=0)
key = jax.random.PRNGKey(0)
init = train.initial_state(exp, key, rng=jax.random.PRNGKey(1))
out = {}
for name, fsdp, mp in [("replicated", False, 1), ("fsdp", True, 1), ("fsdp_x_model", True, 2)]:
    mesh = sharding.make_mesh(model_parallel=mp)
    layout = sharding.state_shardings(init, mesh, fsdp=fsdp, min_size=256)
    step = train.make_train_step(exp, mesh, ema=0.9, ema_warmup=False, state_sharding=layout)
    compiled = step.lower(init, batches[0]).compile()
    state, losses = jax.device_put(init, layout), []
    for s in range(3):
        state, metrics = compiled(state, batches[s])
        losses.append(float(metrics["loss"]))
    # independent count of the bytes each device holds: a leaf split into n parts is 1/n
    def parts(leaf):
        return int(np.prod([dict(mesh.shape)[a] for a in leaf.sharding.spec if a is not None]))
    leaves = jax.tree.leaves(state)
    per_device = sum(a.nbytes // parts(a) for a in leaves) + batches[0]["x"].nbytes // dict(mesh.shape)["data"]
    shard_shapes = {a.addressable_shards[0].data.shape for a in jax.tree.leaves(state.params) if a.size >= 256}
    out[name] = (losses, jax.device_get(state), compiled.memory_analysis(), per_device, shard_shapes)
    print(name, "argument bytes per device", compiled.memory_analysis().argument_size_in_bytes,
          "hand count", per_device, "peak", compiled.memory_analysis().peak_memory_in_bytes)
ref = out["replicated"]
for name in ("fsdp", "fsdp_x_model"):
    losses, state, mem, per_device, shard_shapes = out[name]
    np.testing.assert_allclose(losses, ref[0], rtol=1e-6)
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(ref[1])):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    assert mem.argument_size_in_bytes == per_device
# the replicated run holds the whole state on each device; FSDP an eighth of each large array
total = sum(a.nbytes for a in jax.tree.leaves(ref[1]))
assert ref[2].argument_size_in_bytes == total + 16 * 2 * 4 // 8
assert (64, 8) in out["fsdp"][4] and (64, 64) not in out["fsdp"][4]  # [64, 64] kernels: 8 columns
assert (16, 32) in out["fsdp_x_model"][4]  # [64, 64]: rows over 4 "data", columns over 2 "model"
assert out["fsdp"][2].argument_size_in_bytes < total / 6
print("OK")
"""


def test_fsdp_equals_replicated_on_eight_devices():
    env = {**os.environ, "XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=8",
           "JAX_PLATFORMS": "cpu"}
    res = subprocess.run([sys.executable, "-c", _FSDP_SCRIPT], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and "OK" in res.stdout, res.stdout + res.stderr[-4000:]
