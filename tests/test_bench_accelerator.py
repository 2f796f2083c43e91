"""The accelerator benchmark: its FLOP count against a hand count, its JSON against arithmetic."""

import importlib.util
import json
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "benchmarks" / "bench_accelerator.py"

_spec = importlib.util.spec_from_file_location("bench_accelerator", SCRIPT)
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


class _ConvDense(nn.Module):
    @nn.compact
    def __call__(self, x):
        h = nn.Conv(32, (3, 3), padding="VALID")(x)
        return nn.Dense(10)(h.reshape(h.shape[0], -1))


def test_flops_of_a_training_step_match_a_hand_count():
    # A 3x3 VALID conv (16 -> 32 channels, 10x10 -> 8x8) then a dense layer to 10, on 4 images.
    # Forward: 2 * (multiply-adds). Backward: the dense layer's weight and input gradients (2x its
    # forward), the conv's weight gradient only (x needs none): 2 x conv + 3 x dense.
    b, c = 4, 16
    x, y = jnp.ones((b, 10, 10, c)), jnp.ones((b, 10))
    net = _ConvDense()
    params = net.init(jax.random.PRNGKey(0), x)

    def step(p, x, y):
        return jax.value_and_grad(lambda p: jnp.mean((net.apply(p, x) - y) ** 2))(p)

    flops = bench.compiled_flops(jax.jit(step).lower(params, x, y).compile())
    conv, dense = 2 * b * 8 * 8 * 9 * c * 32, 2 * b * (8 * 8 * 32) * 10
    hand = 2 * conv + 3 * dense
    assert hand <= flops <= 1.01 * hand  # the rest: biases, the loss, elementwise ops


def test_peak_table_and_utilisation():
    assert bench.peak_flops("NVIDIA H100 80GB HBM3", "bfloat16") == 989.4e12
    assert bench.peak_flops("NVIDIA H100 PCIe", "float32") == 378e12
    assert bench.peak_flops("NVIDIA A100-SXM4-40GB", "bfloat16") == 312e12
    assert bench.peak_flops("TPU v3", "bfloat16") * 2 == 123e12  # a v3 device is half a chip
    assert bench.peak_flops("cpu", "float32") is None
    # 1 TFLOP per step at 100 steps/s on a 1 PFLOP/s device is 10 % utilisation
    got = bench.throughput(0.01, batch=128, flops=1e12, peak=1e15)
    np.testing.assert_allclose([got["steps_per_s"], got["images_per_s"], got["mfu"]], [100, 12800, 0.1])


@pytest.mark.slow
def test_tiny_run_prints_consistent_json(capsys):
    """The script's entry point in this process (what a subprocess would add is only the
    interpreter's start): the JSON it prints, read back, against arithmetic."""
    bench.main(["--tiny", "--dtypes", "float32", "--repeats", "2", "--sample_steps", "10"])
    out = json.loads(capsys.readouterr().out)
    assert out["device"]["platform"] == jax.devices()[0].platform
    tr, sa = out["train"]["float32"], out["sample_ddim"]["float32"]
    if out["device"]["platform"] == "cpu":  # no peak known for a CPU
        assert tr["mfu"] is None and tr["peak_flops"] is None
    np.testing.assert_allclose(tr["images_per_s"], tr["batch"] * tr["steps_per_s"], rtol=1e-12)
    np.testing.assert_allclose(sa["images_per_s"], sa["batch"] * sa["chains_per_s"], rtol=1e-12)
    np.testing.assert_allclose(sa["network_evals_per_s"], 10 * sa["chains_per_s"], rtol=1e-12)
    np.testing.assert_allclose(tr["vs_ho2020_tpu_v3_8"], tr["images_per_s"] / (128 * 21), rtol=1e-12)
    # backward ~ 2 x forward for convolutional nets: a training step costs ~3 forward passes
    per_image_step = tr["flops_per_call"] / tr["batch"]
    per_image_eval = sa["flops_per_call"] / (sa["batch"] * sa["num_steps"])
    assert 2.5 < per_image_step / per_image_eval < 3.5
    # the step keeps the state (params, 2 Adam moments, EMA: 4 x params float32) in and out
    state_bytes = 4 * 4 * sum(p.size for p in jax.tree.leaves(_tiny_params()))
    assert tr["peak_bytes"]["program"] >= 2 * state_bytes  # not donated: old and new state
    assert tr["compile_s"] > 0 and sa["compile_s"] > 0


def _tiny_params():
    from jaxdiff import train

    config, shape = bench.experiment_config(tiny=True, dtype="float32")
    exp = train.build_experiment(config, data_shape=shape)
    key = jax.random.PRNGKey(0)
    return jax.eval_shape(lambda k: train.initial_state(exp, k, rng=k).params, key)
