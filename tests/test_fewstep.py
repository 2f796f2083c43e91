"""Few-step generation against exact answers: for Gaussian data the probability-flow map is the
affine transport between the noisy marginals (:mod:`jaxdiff.analytic`), so the exact
consistency function, the exact average velocity and the exact reflowed field are known in
closed form."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxdiff import analytic, data, fewstep, samplers
from jaxdiff.metrics import diversity
from jaxdiff.models.mlp import MLP
from jaxdiff.models.network import NNXNetwork

MEAN = jnp.array([0.3, -0.5, 0.1, 0.8])
VAR = jnp.array([0.25, 0.09, 1.0, 0.04])


def _edm_map(sigma_to):
    """f*(x, sigma): the exact EDM flow from sigma to sigma_to (the consistency function)."""

    def f(x, sigma):
        return analytic.gaussian_edm_flow_map(x, sigma[:, None], sigma_to, MEAN, VAR)

    return f


def test_consistency_function_is_exact_at_the_data_end():
    """f(x, sigma_min) = x for any network (c_skip = 1, c_out = 0), and the network's output
    enters elsewhere."""
    raw = lambda x, c: jnp.tanh(3 * x) + c[:, None]  # noqa: E731
    f = fewstep.consistency_precondition(raw, sigma_min=0.002, sigma_data=0.5)
    x = jax.random.normal(jax.random.PRNGKey(0), (8, 4))
    np.testing.assert_array_equal(f(x, jnp.full((8,), 0.002)), x)
    assert float(jnp.max(jnp.abs(f(x, jnp.full((8,), 1.0)) - x))) > 0.1


def test_multistep_consistency_sampling_with_the_exact_function_draws_the_data():
    """With f* = the exact map to sigma_min, one step is the exact map, and K steps (re-noised
    to each tau with sqrt(tau^2 - sigma_min^2)) draw exactly N(mu, s^2 + sigma_min^2)."""
    sigma_min = 0.5  # large, so the re-noising's correction is visible
    f = _edm_map(sigma_min)
    x_T = 80.0 * jax.random.normal(jax.random.PRNGKey(1), (50_000, 4))
    one = fewstep.multistep_consistency_sample(f, x_T, sigmas=jnp.array([80.0]), sigma_min=sigma_min)
    exact = analytic.gaussian_edm_flow_map(x_T, 80.0, sigma_min, MEAN, VAR)
    np.testing.assert_allclose(one, exact, rtol=1e-5, atol=1e-5)
    x = fewstep.multistep_consistency_sample(
        f, x_T, jax.random.PRNGKey(2), sigmas=jnp.array([80.0, 10.0, 2.0, 0.8]), sigma_min=sigma_min
    )
    np.testing.assert_allclose(jnp.mean(x, 0), MEAN, atol=0.02)
    np.testing.assert_allclose(jnp.var(x, 0), VAR + sigma_min**2, rtol=0.03)
    # a chain that re-noised to tau itself would add sigma_min^2 too much variance
    assert float(jnp.max(jnp.abs(jnp.var(x, 0) - VAR - 2 * sigma_min**2))) > 0.1


@pytest.mark.parametrize("method, order", [("euler", 1), ("heun", 2)])
def test_distillation_loss_vanishes_at_the_solver_order(method, order):
    """With the exact consistency function and the exact teacher, the distillation loss is
    the ODE step's local error through f*: O(h^(order+1)) in distance, so the squared L2 loss
    falls with slope 2 (order + 1) in log h."""
    f = _edm_map(0.002)
    teacher = analytic.gaussian_denoiser_fn(MEAN, VAR)
    x0 = MEAN + jnp.sqrt(VAR) * jax.random.normal(jax.random.PRNGKey(3), (4096, 4))
    steps = np.array([0.1, 0.05, 0.025, 0.0125])
    loss_at = jax.jit(lambda h: jnp.mean(fewstep.consistency_distillation_loss(
        f, teacher, x0, jax.random.PRNGKey(4), sigmas=jnp.stack([1.0, 1.0 + h]), method=method,
        distance="l2",
    )))
    loss = [float(loss_at(h)) for h in steps]
    slope = np.polyfit(np.log(steps), np.log(loss), 1)[0]
    assert abs(slope - 2 * (order + 1)) < 0.3, (slope, loss)


def test_curriculum_and_level_sampling_of_improved_consistency_training():
    """N(k) doubles from s0 + 1 to s1 + 1 every K' = K / 8 steps (s0 = 10, s1 = 1280); the
    levels drawn by consistency training fall in the grid's intervals as often as log-normal
    draws of log sigma do (a Monte Carlo histogram, conditioned on the grid's range)."""
    steps = fewstep.discretization_steps(jnp.array([0, 124, 125, 250, 874, 875, 999]), total_steps=1000)
    np.testing.assert_array_equal(steps, [11, 11, 21, 41, 641, 1281, 1281])
    grids = fewstep.curriculum_sigmas(sigma_min=0.002, sigma_max=80.0, rho=7.0, s0=10, s1=1280)
    grid = grids[0, :11]
    assert grids.shape == (8, 1281) and float(grid[0]) == pytest.approx(0.002)
    assert float(grid[-1]) == pytest.approx(80.0) and bool(jnp.all(jnp.diff(grid) > 0))

    # f(x, sigma) = sigma makes the squared-L2 loss the width sigma_{i+1} - sigma_i of the drawn
    # interval, which names it (the widths of a Karras grid increase)
    loss = jax.jit(lambda x0, key: fewstep.consistency_training_loss(
        lambda x, s: jnp.zeros_like(x) + s[:, None], x0, key, sigmas=grids[0], num_levels=11,
        distance="l2",
    ))(jnp.zeros((40_000, 1)), jax.random.PRNGKey(5))
    widths = np.diff(np.asarray(grid))
    index = np.argmin(np.abs(np.asarray(loss)[:, None] - widths[None]), axis=1)
    drawn = np.bincount(index, minlength=10) / loss.shape[0]
    log_sigma = -1.1 + 2.0 * np.random.default_rng(0).standard_normal(1_000_000)
    expected = np.histogram(np.exp(log_sigma), bins=np.asarray(grid))[0].astype(float)
    np.testing.assert_allclose(drawn, expected / expected.sum(), atol=1e-2)


def _flow_map(x, t_from, t_to):
    shape = (-1, 1)
    return analytic.gaussian_linear_flow_map(
        x, jnp.reshape(t_from, shape), jnp.reshape(t_to, shape), MEAN, VAR
    )


def _exact_u(z, r, t):
    """u*(z, r, t) = (z - flow_{t -> r}(z)) / (t - r), the exact average velocity."""
    return (z - _flow_map(z, t, r)) / (t - r)[:, None]


def test_meanflow_identity_holds_for_the_exact_average_velocity():
    """u* = v* - (t - r) d/dt u* with d/dt u* from jax.jvp (tangent (v*, 0, 1)); the
    instantaneous velocity in place of u* violates it."""
    key_z, key_r, key_t = jax.random.split(jax.random.PRNGKey(7), 3)
    z = jax.random.normal(key_z, (256, 4))
    t = jax.random.uniform(key_t, (256,), minval=0.2, maxval=0.95)
    r = t * jax.random.uniform(key_r, (256,), minval=0.0, maxval=0.9)
    v_star = analytic.gaussian_velocity_fn(MEAN, VAR)
    v = v_star(z, t)
    u, target = jax.jit(fewstep.meanflow_target, static_argnums=0)(_exact_u, z, r, t, v)
    np.testing.assert_allclose(u, _exact_u(z, r, t), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(target, u, rtol=2e-4, atol=2e-4)
    _, wrong = fewstep.meanflow_target(lambda z, r, t: v_star(z, t), z, r, t, v)
    assert float(jnp.max(jnp.abs(wrong - v))) > 0.05


def _exact_u_of(mean):
    def u(z, r, t):
        flow = analytic.gaussian_linear_flow_map(z, t[:, None], r[:, None], mean, VAR)
        return (z - flow) / (t - r)[:, None]

    return u


@pytest.mark.parametrize("scale, mix", [(3.0, 0.0), (1.5, 0.5)])
def test_guided_meanflow_target_is_the_exact_guided_average_velocity(scale, mix):
    """Class c ~ N(mu_c, s^2) and the null label's N(mu_0, s^2) (one variance): the guided field
    w' v_c + (1 - w') v_0, w' = w / (1 - kappa), is the exact velocity of N(w' mu_c + (1 - w')
    mu_0, s^2), so its average velocity u_g is closed-form. With u_g as the network on the
    label, the exact u_0 on the null label and the exact v_c in place of the drawn velocity,
    the guided target equals u_g; the unguided target does not."""
    key_z, key_r, key_t = jax.random.split(jax.random.PRNGKey(14), 3)
    z = jax.random.normal(key_z, (256, 4))
    t = jax.random.uniform(key_t, (256,), minval=0.2, maxval=0.95)
    r = t * jax.random.uniform(key_r, (256,), minval=0.0, maxval=0.9)
    mean_c, mean_0 = MEAN, jnp.array([-0.4, 0.2, 0.6, -0.1])
    effective = scale / (1.0 - mix)
    mean_g = effective * mean_c + (1 - effective) * mean_0
    u_guided = _exact_u_of(mean_g)
    # u(z, t, t) is the instantaneous velocity: of the guided field, and of the null label's
    v_g, v_0, v_c = (analytic.gaussian_velocity_fn(m, VAR)(z, t) for m in (mean_g, mean_0, mean_c))
    v = fewstep.guided_velocity(v_c, v_g, v_0, scale=scale, mix=mix)
    _, target = jax.jit(fewstep.meanflow_target, static_argnums=0)(u_guided, z, r, t, v)
    np.testing.assert_allclose(target, u_guided(z, r, t), rtol=2e-4, atol=2e-4)
    _, unguided = fewstep.meanflow_target(u_guided, z, r, t, v_c)
    assert float(jnp.max(jnp.abs(unguided - u_guided(z, r, t)))) > 0.1
    # per example: where the label was dropped (scale 1, mix 0) the velocity is left as drawn
    dropped = jnp.arange(256) % 2 == 0
    mixed = fewstep.guided_velocity(
        v_c, v_g, v_0, scale=jnp.where(dropped, 1.0, scale), mix=jnp.where(dropped, 0.0, mix)
    )
    np.testing.assert_array_equal(mixed[dropped], v_c[dropped])
    np.testing.assert_allclose(mixed[~dropped], v[~dropped], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("num_steps", [1, 3])
def test_meanflow_sampling_with_the_exact_average_velocity_is_the_exact_map(num_steps):
    noise = jax.random.normal(jax.random.PRNGKey(8), (512, 4))
    x = fewstep.meanflow_sample(_exact_u, noise, num_steps=num_steps)
    np.testing.assert_allclose(x, _flow_map(noise, 1.0, 0.0), rtol=1e-5, atol=1e-5)


def _closed_form_straightness():
    """S = int_0^1 mean_d (1 - s_d - g_d'(t))^2 dt for the exact flow of N(mu, s^2): paths x_t
    = (1 - t) mu + g(t) z with g(t) = sqrt((1 - t)^2 s^2 + t^2), by the trapezoidal rule."""
    t = np.linspace(0.0, 1.0, 200_001)[:, None]
    s2 = np.asarray(VAR)[None]
    g_prime = (t - (1 - t) * s2) / np.sqrt((1 - t) ** 2 * s2 + t**2)
    return float(np.mean(np.trapezoid((1 - np.sqrt(s2) - g_prime) ** 2, t[:, 0], axis=0)))


def test_reflow_of_the_exact_gaussian_flow_is_straight():
    """The exact flow's pairs (x_0, x_1) = (T(z), z) come from its ODE; the reflowed field
    v(x, t) = z - T(z) at z = (x - (1 - t) mu) / ((1 - t) s + t) fits them with zero loss, has
    zero straightness (the 1-rectified flow has the closed-form S > 0), and one Euler step of
    it is the exact map."""
    v_star = analytic.gaussian_velocity_fn(MEAN, VAR)
    s = jnp.sqrt(VAR)

    def v_reflow(x, t):
        z = (x - (1 - t[:, None]) * MEAN) / ((1 - t[:, None]) * s + t[:, None])
        return z - (MEAN + s * z)

    x1 = jax.random.normal(jax.random.PRNGKey(9), (4096, 4))
    x0 = samplers.flow_sample(v_star, x1, num_steps=64, method="heun")  # the pairs, by ODE
    key = jax.random.PRNGKey(10)
    assert float(jnp.mean(fewstep.reflow_loss(v_reflow, x0, x1, key))) < 1e-6
    assert float(jnp.mean(fewstep.reflow_loss(v_star, x0, x1, key))) > 1e-2
    np.testing.assert_allclose(
        jnp.mean(fewstep.straightness(v_star, x1, num_steps=64)), _closed_form_straightness(), rtol=0.03
    )
    assert float(jnp.mean(fewstep.straightness(v_reflow, x1, num_steps=16))) < 1e-9
    one_step = samplers.flow_sample(v_reflow, x1, num_steps=1)
    np.testing.assert_allclose(one_step, _flow_map(x1, 1.0, 0.0), rtol=1e-5, atol=1e-5)


def test_distilling_the_reflowed_gaussian_flow_gives_the_exact_one_step_map():
    """Liu et al.'s distillation: the coupling of the exact flow by its ODE (reflow_pairs),
    and the loss at t = 1 alone minimised over affine maps v(x, 1) = a x + b (one Newton step
    of a quadratic): x_1 - v(x_1, 1) is the exact map on fresh noise (the coupling of the
    reflowed field gives the same)."""
    v_star = analytic.gaussian_velocity_fn(MEAN, VAR)
    x1 = jax.random.normal(jax.random.PRNGKey(11), (1024, 4))
    x0, noise = fewstep.reflow_pairs(v_star, x1, num_steps=256)
    np.testing.assert_allclose(x0, _flow_map(x1, 1.0, 0.0), rtol=1e-4, atol=1e-4)

    def loss(theta):
        v = lambda x, t: theta[:4] * x + theta[4:]  # noqa: E731
        return jnp.mean(fewstep.reflow_loss(
            v, x0, noise, jax.random.PRNGKey(12), time_sampling=fewstep.one_step_time
        ))

    newton = jax.jit(lambda theta: theta - jnp.linalg.solve(jax.hessian(loss)(theta), jax.grad(loss)(theta)))
    theta = newton(jnp.zeros(8))
    fresh = jax.random.normal(jax.random.PRNGKey(13), (512, 4))
    one_step = fresh - (theta[:4] * fresh + theta[4:])
    np.testing.assert_allclose(one_step, _flow_map(fresh, 1.0, 0.0), rtol=1e-4, atol=1e-4)
    assert float(loss(theta)) < 1e-8 < float(loss(jnp.zeros(8)))


def test_energy_distance_of_two_gaussians_has_its_closed_form():
    """N(0, 1) against N(mu, 1): E = 2 E|N(mu, 2)| - 2 E|N(0, 2)| (Szekely & Rizzo 2013)."""
    from scipy.stats import norm

    mu, rng = 1.5, np.random.default_rng(0)
    x, y = rng.standard_normal((3000, 1)), mu + rng.standard_normal((3000, 1))
    folded = 2 / np.sqrt(np.pi) * np.exp(-(mu**2) / 4) + mu * (1 - 2 * norm.cdf(-mu / np.sqrt(2)))
    assert diversity.energy_distance(x, y) == pytest.approx(2 * folded - 4 / np.sqrt(np.pi), abs=0.12)
    assert abs(diversity.energy_distance(x, rng.standard_normal((3000, 1)))) < 0.05


# --- small trained models on the 8-mode ring ---------------------------------------------------

RING = data.gaussian_mixture("train", num=4096)
RING_CENTRES = np.stack([np.cos(np.arange(8) * np.pi / 4), np.sin(np.arange(8) * np.pi / 4)], 1)


def _train(loss_fn, params, *, steps=400, batch=256):
    """Adam on ``loss_fn(params, x, key) -> [B]`` over batches of the ring, one jitted step."""
    points = jnp.asarray(np.stack([RING[i]["x"] for i in range(len(RING))]))
    tx = optax.adam(1e-3)

    @jax.jit
    def step(params, opt_state, k):
        key = jax.random.fold_in(jax.random.PRNGKey(1), k)
        x = points[jax.random.randint(jax.random.fold_in(key, 1), (batch,), 0, points.shape[0])]
        grads = jax.grad(lambda p: jnp.mean(loss_fn(p, x, key, k)))(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    opt_state = tx.init(params)
    for k in range(steps):
        params, opt_state = step(params, opt_state, k)
    return params, points


def _check_one_step_samples(sample, initial, trained, points):
    """Every mode of the ring covered, and the energy distance to the data fallen from the
    untrained model's to under half of it."""
    before, after = (np.asarray(jax.jit(sample)(p, jax.random.PRNGKey(3))) for p in (initial, trained))
    modes = diversity.mode_statistics(after, RING_CENTRES, std=0.05)
    assert modes["modes_covered"] == 8, modes
    reference = np.asarray(points[:2000])
    assert diversity.energy_distance(after, reference) < diversity.energy_distance(before, reference) / 2


def test_consistency_training_from_scratch_covers_the_ring_in_one_step():
    net = NNXNetwork(lambda rngs: MLP(2, features=64, num_blocks=2, rngs=rngs))
    grids = fewstep.curriculum_sigmas(sigma_min=0.002, sigma_max=10.0, rho=7.0, s0=10, s1=20)

    def f(params):
        raw = lambda x, c: net.apply({"params": params}, x, 1000 * c)  # noqa: E731
        return fewstep.consistency_precondition(raw, sigma_min=0.002, sigma_data=0.7)

    def loss(params, x, key, k):
        num = fewstep.discretization_steps(k, total_steps=400, s0=10, s1=20)
        stage = jnp.log2((num - 1) // 10).astype(jnp.int32)
        return fewstep.consistency_training_loss(f(params), x, key, sigmas=grids[stage], num_levels=num)

    def sample(params, key):
        x_T = 10.0 * jax.random.normal(key, (2000, 2))
        return fewstep.multistep_consistency_sample(f(params), x_T, sigmas=jnp.array([10.0]))

    initial = net.init(jax.random.PRNGKey(0), jnp.zeros((1, 2)), jnp.zeros((1,)))["params"]
    trained, points = _train(loss, initial)
    _check_one_step_samples(sample, initial, trained, points)


def test_meanflow_covers_the_ring_in_one_step():
    """MeanFlow's target is one drawn velocity e - x, through the jvp's tangent too, so its
    gradient is noisy: with the paper's ImageNet batch mix (256 pairs, 25% with r != t) only
    ~20% of the one-step samples land within 3 std of a mode after 400 steps, and whether all
    eight get their share depends on the initial weights (8 of 8 for one init in four). With
    1024 pairs, half of them r != t, all eight are covered for each of eight inits. The
    network sees t itself (t scaled by 10 or 1000, as for a sinusoidal embedding made for
    integer steps, makes d/dt u large and the target noisier still: 0-2 modes)."""
    net = NNXNetwork(lambda rngs: MLP(3, features=64, num_blocks=2, out_features=2, rngs=rngs))

    def u(params):  # the gap t - r enters as an input feature, t through the embedding
        return lambda z, r, t: net.apply({"params": params}, jnp.concatenate([z, (t - r)[:, None]], -1), t)

    def loss(params, x, key, k):
        return fewstep.meanflow_loss(u(params), x, key, ratio=0.5)

    def sample(params, key):
        return fewstep.meanflow_sample(u(params), jax.random.normal(key, (2000, 2)), num_steps=1)

    initial = net.init(jax.random.PRNGKey(0), jnp.zeros((1, 3)), jnp.zeros((1,)))["params"]
    trained, points = _train(loss, initial, batch=1024)
    _check_one_step_samples(sample, initial, trained, points)
