"""VDM (Kingma et al. 2021) against exact answers: the optimal model of Gaussian data gives the
continuous and T-step losses in closed form, discretised Gaussian data have a known entropy, and
the gradients of the bound (and of its second moment) are integrals computed by quadrature."""

import functools
import math

from flax import nnx
import jax
from jax.flatten_util import ravel_pytree
import jax.numpy as jnp
import numpy as np
import pytest
from numpy.polynomial.hermite_e import hermegauss
from scipy.special import logsumexp

from jaxdiff import analytic, losses, processes, samplers, vdm
from jaxdiff.models.network import NNXNetwork

LN2 = math.log(2.0)
MU, VAR = 0.3, 0.25  # Gaussian data N(MU, VAR) in every dimension


def _gaussian_data(n, d, seed=1):
    return MU + math.sqrt(VAR) * jax.random.normal(jax.random.PRNGKey(seed), (n, d))


def _repeated_mean(fn, reps):
    """Mean and standard error over ``reps`` independent keys of a jitted batch mean."""
    values = np.array([fn(jax.random.PRNGKey(100 + i)) for i in range(reps)], np.float64)
    return values.mean(), values.std(ddof=1) / math.sqrt(reps)


def _learned_gamma(features=8, scale=30.0, seed=0):
    """A learned schedule whose shape is clearly not linear (l3's weights scaled up)."""
    module = vdm.LearnedGamma(gamma_min=-10.0, gamma_max=4.0, features=features,
                              rngs=nnx.Rngs(seed))
    graphdef, params = nnx.split(module)
    factors = {"l2": 10.0, "l3": scale}

    def perturb(path, p):
        name = jax.tree_util.keystr(path)
        return p * next((f for layer, f in factors.items() if layer in name), 1.0)

    params = jax.tree_util.tree_map_with_path(perturb, params)
    return functools.partial(nnx.merge, graphdef), params


def _closed_continuous_bpd(gamma_0, gamma_1, var=VAR):
    """L_infinity of the optimal model per dimension: 0.5 [log(1 + s^2 SNR_0) - log(1 + s^2
    SNR_1)] (the integral of 0.5 gamma' s^2 SNR / (1 + s^2 SNR) over gamma), in bits."""
    return 0.5 * (math.log1p(var * math.exp(-gamma_0)) - math.log1p(var * math.exp(-gamma_1))) / LN2


@pytest.mark.parametrize("learned", [False, True])
def test_continuous_loss_equals_closed_form(learned):
    if learned:  # the continuous loss depends on the schedule only through its end points
        merge, params = _learned_gamma()
        gamma_fn = merge(params)
    else:
        gamma_fn = vdm.linear_gamma
    g0, g1 = float(gamma_fn(jnp.zeros(()))), float(gamma_fn(jnp.ones(())))
    d = 4
    model = analytic.gaussian_vdm_eps_fn(gamma_fn, jnp.full((d,), MU), jnp.full((d,), VAR))
    x0 = _gaussian_data(4096, d)
    fn = jax.jit(lambda k: jnp.mean(losses.vdm_loss(model, gamma_fn, x0, k)["diffusion"]))
    mean, se = _repeated_mean(fn, 8)
    assert abs(mean - _closed_continuous_bpd(g0, g1)) < 4 * se + 1e-3


def test_discrete_loss_decreases_to_the_continuous_one():
    """L_T of the optimal model is 0.5 sum_i (SNR(s_i) - SNR(t_i)) mmse_x(t_i) in closed form; it
    decreases with T towards L_infinity (Kingma et al. 2021, Sec. 4.1)."""
    d = 4
    gamma_fn = vdm.linear_gamma
    model = analytic.gaussian_vdm_eps_fn(gamma_fn, jnp.full((d,), MU), jnp.full((d,), VAR))
    x0 = _gaussian_data(4096, d)
    continuous = _closed_continuous_bpd(vdm.GAMMA_MIN, vdm.GAMMA_MAX)
    closed = []
    for steps in (2, 10, 100, 1000):
        snr = np.exp(-np.linspace(vdm.GAMMA_MIN, vdm.GAMMA_MAX, steps + 1))
        closed.append(0.5 * np.sum((snr[:-1] - snr[1:]) * VAR / (1 + snr[1:] * VAR)) / LN2)
        fn = jax.jit(
            lambda k, steps=steps: jnp.mean(
                losses.vdm_loss(model, gamma_fn, x0, k, num_timesteps=steps)["diffusion"]
            )
        )
        mean, se = _repeated_mean(fn, 4)
        assert abs(mean - closed[-1]) < 4 * se + 1e-3 * closed[-1]
    assert np.all(np.diff(closed) < 0) and np.all(np.asarray(closed) > continuous)
    assert closed[-1] - continuous < 0.01 * continuous


def test_bound_of_discretised_gaussian_is_just_above_its_entropy():
    """8-bit data x = v_k with P(k) proportional to N(v_k; 0.1, 0.05^2) and its exact optimal model
    (a mixture of point masses): the bound of the drawn data is above their cross-entropy
    -mean log P(x) and close to it (the gap is the decoder's ignorance of P, < 0.01 bits)."""
    values = np.arange(256) / 127.5 - 1.0
    probs = np.exp(-0.5 * ((values - 0.1) / 0.05) ** 2)
    probs /= probs.sum()
    index = jax.random.choice(jax.random.PRNGKey(2), 256, (8192,), p=jnp.asarray(probs))
    x0 = jnp.asarray(values, jnp.float32)[index][:, None]
    cross_entropy = float(-np.mean(np.log2(probs[np.asarray(index)])))
    model = analytic.mixture_vdm_eps_fn(
        vdm.linear_gamma, jnp.asarray(probs), jnp.asarray(values)[:, None], jnp.zeros((256, 1))
    )
    fn = jax.jit(lambda k: jnp.mean(losses.vdm_loss(model, vdm.linear_gamma, x0, k)["total"]))
    mean, se = _repeated_mean(fn, 16)
    assert se < 0.05
    assert mean > cross_entropy - 3 * se
    assert mean < cross_entropy + 0.01 + 3 * se


def _moments(gamma_fn, ref_gamma_fn, t, d):
    """Per-dimension mean m and variance v of e = eps - eps_hat at time t, with eps_hat the optimal
    predictor of a *fixed* reference schedule, eps_hat = k (z - a_r mu), and z = a x + b eps. The
    model is called with the normalized gamma u = (gamma(t) - gamma(0)) / (gamma(1) - gamma(0))
    and reads it on the reference schedule's end points."""
    gamma_0, gamma_1 = gamma_fn(jnp.zeros(())), gamma_fn(jnp.ones(()))
    u = (gamma_fn(t) - gamma_0) / (gamma_1 - gamma_0)
    ref_0, ref_1 = ref_gamma_fn(jnp.zeros(())), ref_gamma_fn(jnp.ones(()))
    a, b = vdm.alpha_sigma(gamma_fn(t))
    a_r, b_r = vdm.alpha_sigma(ref_0 + (ref_1 - ref_0) * u)
    k = b_r / (a_r**2 * VAR + b_r**2)
    m = -k * (a - a_r) * MU
    v = (1 - k * b) ** 2 + k**2 * a**2 * VAR
    return m, v


def _quadrature_objectives(gamma_fn, ref_gamma_fn, d, nodes=400):
    """By Gauss-Legendre quadrature over t: the bound (prior + diffusion, bits/dim, the model
    fixed) and the second moment E[L_diff^2] of the per-example diffusion term."""
    x, w = np.polynomial.legendre.leggauss(nodes)
    t, w = jnp.asarray(0.5 * (x + 1)), jnp.asarray(0.5 * w)
    _, dgamma = vdm.gamma_and_derivative(gamma_fn, t)
    m, v = _moments(gamma_fn, ref_gamma_fn, t, d)
    first = d * (v + m**2)  # E ||e||^2
    second = d * (2 * v**2 + 4 * v * m**2) + first**2  # E ||e||^4
    scale = 0.5 * dgamma / (d * LN2)
    diffusion = jnp.sum(w * scale * first)
    second_moment = jnp.sum(w * scale**2 * second)
    g1 = gamma_fn(jnp.ones(()))
    a1, s1 = vdm.alpha_sigma(g1)
    prior = 0.5 * (s1**2 + a1**2 * (MU**2 + VAR) - 1 - jnp.log(s1**2)) / LN2
    return diffusion + prior, second_moment


def test_schedule_gradients_are_unbiased():
    """The end points' gradient is the bound's; the shape's gradient is the bound's with
    ``schedule_gradient="bound"`` and that of the diffusion term's second moment (the variance
    objective of Sec. 5.3) with ``"variance"``. Monte Carlo against quadrature."""
    d = 2
    merge, params0 = _learned_gamma()
    ref_gamma = merge(params0)
    model = analytic.gaussian_vdm_eps_fn(ref_gamma, jnp.full((d,), MU), jnp.full((d,), VAR))
    x0 = _gaussian_data(4096, d, seed=3)
    # a point away from the reference schedule, so that the model is not optimal there
    params = jax.tree.map(lambda p: p * 1.5, params0)

    def apply(p):
        return merge(p)

    bound_grad = jax.jit(jax.grad(lambda p: _quadrature_objectives(apply(p), ref_gamma, d)[0]))(params)
    second_grad = jax.jit(jax.grad(lambda p: _quadrature_objectives(apply(p), ref_gamma, d)[1]))(params)

    def mc_grad(mode):
        def one(key):
            def objective(p):
                out = losses.vdm_loss(model, apply(p), x0, key, schedule_gradient=mode)
                return jnp.mean(out["diffusion"] + out["prior"])

            return jax.grad(objective)(params)

        one = jax.jit(one)
        grads = [one(jax.random.PRNGKey(200 + i)) for i in range(16)]
        flat = np.stack([ravel_pytree(g)[0] for g in grads])
        return flat.mean(0), flat.std(0, ddof=1) / math.sqrt(len(grads))

    ravel = lambda tree: np.asarray(ravel_pytree(tree)[0])  # noqa: E731
    names = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
    ends = np.array(["gamma_0" in n or "gamma_1" in n for n in names])
    sizes = [x.size for x in jax.tree.leaves(params)]
    ends = np.repeat(ends, sizes)

    mean, se = mc_grad("bound")
    truth = ravel(bound_grad)
    assert np.all(np.abs(mean - truth) < 4 * se + 1e-3 * np.abs(truth).max())

    mean, se = mc_grad("variance")
    truth = np.where(ends, ravel(bound_grad), ravel(second_grad))
    assert np.all(np.abs(mean - truth) < 4 * se + 1e-3 * np.abs(truth).max())
    # not vacuous: the two modes' shape gradients differ by many standard errors
    gap = np.abs(ravel(second_grad) - ravel(bound_grad))[~ends]
    assert np.max(gap / se[~ends]) > 20
    # the network sees gamma, so the bound depends on the end points alone (eq. 17 after
    # t -> gamma): its gradient in the shape vanishes, and "variance" leaves the bound unbiased
    assert np.max(np.abs(ravel(bound_grad)[~ends])) < 1e-3 * np.max(np.abs(ravel(bound_grad)[ends]))


def test_decoder_probabilities_are_the_posterior_under_a_uniform_prior():
    z0 = jax.random.normal(jax.random.PRNGKey(0), (3, 5)) * 0.8
    values = np.arange(256) / 127.5 - 1.0
    for gamma_0 in (-13.0, -5.0, 0.0, 3.0):
        log_probs = np.asarray(vdm.decoder_log_probs(z0, gamma_0), np.float64)
        np.testing.assert_allclose(np.exp(log_probs).sum(-1), 1.0, atol=1e-5)
        # Bayes: p(v_k | z_0) = N(z_0; alpha_0 v_k, sigma_0^2) / sum_j N(z_0; alpha_0 v_j, sigma_0^2)
        a2 = 1.0 / (1.0 + math.exp(gamma_0))
        log_lik = -0.5 * (np.asarray(z0, np.float64)[..., None] - math.sqrt(a2) * values) ** 2 / (1 - a2)
        expected = log_lik - logsumexp(log_lik, axis=-1, keepdims=True)
        # float32: at gamma_0 = -13 a rounding of v_k by 3e-8 moves a logit by ~5e-5
        np.testing.assert_allclose(np.exp(log_probs), np.exp(expected), atol=2e-4)


def _quadrature_reconstruction_bits(k, gamma_0, nodes=120):
    """E_eps[-log2 p(v_k | z_0)] for x = v_k, by Gauss-Hermite quadrature over eps (z_0 / alpha_0
    = v_k + e^{gamma_0 / 2} eps)."""
    values = np.arange(256) / 127.5 - 1.0
    eps, w = hermegauss(nodes)
    w = w / w.sum()
    z = values[k] + math.exp(gamma_0 / 2) * eps[:, None]
    logits = -0.5 * math.exp(-gamma_0) * (z - values) ** 2
    nll = -(logits[:, k] - logsumexp(logits, axis=-1))
    return float(np.sum(w * nll) / LN2)


def test_reconstruction_vanishes_at_high_snr_on_the_17_level_grid():
    levels = np.round(np.arange(17) * 255.0 / 16.0).astype(int)  # the digits' grey levels
    x0 = jnp.asarray(levels / 127.5 - 1.0, jnp.float32)[jnp.arange(4096) % 17].reshape(64, 64)

    @jax.jit
    def decoder_bits(key, gamma_0):
        gamma_fn = functools.partial(vdm.linear_gamma, gamma_min=gamma_0, gamma_max=5.0)
        return jnp.mean(losses.vdm_loss(lambda z, t: jnp.zeros_like(z), gamma_fn, x0, key)["decoder"])

    previous = np.inf
    for gamma_0 in (-8.0, -10.0, -11.5, -13.3, -16.0):
        closed = np.mean([_quadrature_reconstruction_bits(k, gamma_0) for k in levels])
        mean, se = _repeated_mean(lambda key, g=gamma_0: decoder_bits(key, g), 4)
        assert abs(mean - closed) < 4 * se + 1e-3 * closed + 1e-7
        assert closed < previous
        previous = closed
    assert previous < 1e-6


def test_learned_gamma_is_increasing_with_its_end_points():
    merge, params = _learned_gamma()
    t = jnp.linspace(0.0, 1.0, 501)
    gamma = merge(params)(t)
    assert np.all(np.diff(np.asarray(gamma)) > 0)
    np.testing.assert_allclose(gamma[0], params["gamma_0"][...], atol=1e-5)
    np.testing.assert_allclose(gamma[-1], params["gamma_1"][...], atol=1e-5)
    linear = np.linspace(-10.0, 4.0, 501)
    assert np.abs(np.asarray(gamma) - linear).max() > 0.5  # a shape other than the line


def test_fourier_features_wrap_a_network():
    class Identity(nnx.Module):
        def __call__(self, x, t):
            return x

    z = jax.random.normal(jax.random.PRNGKey(0), (2, 3, 3, 2))
    net = vdm.FourierFeatures(Identity(), exponents=(1, 3))
    out = net(z, jnp.zeros((2,)))
    zn = np.asarray(z, np.float64)
    expected = [zn]
    angles = np.concatenate([zn[..., c : c + 1] * np.pi * 2.0 ** np.array([1, 3]) for c in range(2)], -1)
    expected += [np.sin(angles), np.cos(angles)]
    np.testing.assert_allclose(out, np.concatenate(expected, -1), atol=1e-5)


def test_ancestral_sampler_reproduces_gaussian_data():
    """With the optimal model and many steps, the chain's samples have the data's moments."""
    d = 2
    gamma_fn = vdm.linear_gamma
    model = analytic.gaussian_vdm_eps_fn(gamma_fn, jnp.full((d,), MU), jnp.full((d,), VAR))
    z1 = jax.random.normal(jax.random.PRNGKey(0), (8192, d))
    x = samplers.vdm_sample(model, gamma_fn, z1, jax.random.PRNGKey(1), num_steps=200, decode=False)
    x = np.asarray(x, np.float64).ravel()
    n = x.size
    assert abs(x.mean() - MU) < 4 * math.sqrt(VAR / n)
    assert abs(x.var() - VAR) < 4 * VAR * math.sqrt(2 / n) + 0.01 * VAR


def test_bad_arguments_name_themselves():
    x0 = jnp.zeros((2, 3))
    with pytest.raises(ValueError, match="num_timesteps"):
        losses.vdm_loss(lambda z, t: z, vdm.linear_gamma, x0, jax.random.PRNGKey(0), num_timesteps=0)
    with pytest.raises(ValueError, match="schedule_gradient"):
        losses.vdm_loss(lambda z, t: z, vdm.linear_gamma, x0, jax.random.PRNGKey(0), schedule_gradient="x")
    with pytest.raises(ValueError, match="model output"):
        losses.vdm_loss(lambda z, t: z[:, :1], vdm.linear_gamma, x0, jax.random.PRNGKey(0))


class _ConstantLogits(nnx.Module):
    """A network whose logits over the 256 values are a fixed table ``[H, W, C, 256]``."""

    def __init__(self, log_probs):
        self.table = nnx.Variable(jnp.asarray(log_probs).reshape(*log_probs.shape[:-2], -1))

    def __call__(self, z, t):
        return jnp.broadcast_to(self.table[...], z.shape[:1] + self.table.shape)


def test_categorical_head_with_the_data_prior_is_the_exact_posterior_mean():
    """With logits log q_d(v) the head's x^ is E[x_d | z_d] of independent pixels with those
    marginals (Bayes' rule, computed by :func:`pixel_baseline.posterior_mean`)."""
    from jaxdiff.metrics import pixel_baseline

    rng = np.random.default_rng(0)
    images = rng.choice(np.round(np.arange(17) * 255 / 16).astype(np.uint8), size=(50, 3, 3, 1))
    log_probs = pixel_baseline.fit_pixel_categoricals(images, levels=np.unique(images))
    z = jnp.asarray(rng.normal(size=(4, 3, 3, 1)), jnp.float32)
    for gamma in (-12.0, -4.0, 0.0, 4.0):
        alpha, sigma = (math.sqrt(1.0 / (1.0 + math.exp(s * gamma))) for s in (1, -1))
        expected = (z - alpha * pixel_baseline.posterior_mean(log_probs, z, alpha, sigma)) / sigma
        eps_hat = vdm.categorical_eps(jnp.asarray(log_probs, jnp.float32), z, jnp.float32(gamma))
        np.testing.assert_allclose(eps_hat, expected, rtol=1e-4, atol=1e-4)


def test_vdm_bound_of_the_exact_categorical_model_is_the_likelihood():
    """A VDM whose categorical head holds the data's true per-pixel marginals is the exact model
    of independent-pixel data, so its continuous-time bound is -log2 q(x) / D in expectation
    (I-MMSE; Kingma et al. 2021, eq. 17): checked on data drawn from 17-level categoricals."""
    rng = np.random.default_rng(1)
    levels = np.round(np.arange(17) * 255 / 16).astype(int)
    q = rng.dirichlet(np.full(17, 0.7), size=(4, 4, 1))  # [4, 4, 1, 17]
    log_q = np.full((4, 4, 1, 256), -np.inf)
    log_q[..., levels] = np.log(q)
    cdf = np.cumsum(q, axis=-1)
    index = (rng.uniform(size=(4096, 4, 4, 1, 1)) > cdf).sum(-1)
    images = levels[index]
    exact_bits = -np.take_along_axis(np.log(q)[None], index[..., None], -1).mean() / LN2
    model = vdm.VDMModel(_ConstantLogits(log_q), head="categorical")
    model_fn, gamma_fn = model, model.gamma
    x0 = jnp.asarray(images / 127.5 - 1.0, jnp.float32)
    bound = jax.jit(lambda key: jnp.mean(losses.vdm_loss(model_fn, gamma_fn, x0, key)["total"]))
    mean, se = _repeated_mean(bound, 8)
    assert abs(mean - exact_bits) < 4 * se + 5e-3, (mean, se, exact_bits)
    # what `jaxdiff eval` reports for a VDM run: 8 draws per example averaged
    from jaxdiff import evaluate

    r = evaluate.evaluate_bound(
        _model_bound, model_fn, images[:512].astype(np.uint8), jax.random.PRNGKey(7),
        batch_size=256, draws=8,
    )
    exact_512 = -np.take_along_axis(np.log(q)[None], index[:512, ..., None], -1).mean() / LN2
    assert r["draws"] == 8 and abs(r["total_bpd"] - exact_512) < 4 * r["stderr_bpd"]


def _model_bound(model_fn, x0, rng):
    """The continuous-time bound of a VDMModel on its own schedule, as the diffusion family
    computes it (``evaluate_bound`` passes the model as a pytree function, whose ``method=``
    calls its schedule)."""
    return losses.vdm_loss(model_fn, functools.partial(model_fn, method="gamma"), x0, rng)


def test_probability_flow_of_the_exact_categorical_model_gives_its_density():
    """The probability-flow ODE of the exact model of independent-pixel data (the categorical
    head holding the true marginals) gives that data's density at t = 0 in closed form,
    prod_d sum_k q_d(v_k) N(x_d; alpha_0 v_k, sigma_0^2), at points within a bin of the values:
    the ODE likelihood of a VDM (``jaxdiff eval --ode``) on the 8-bit grid it has learned."""
    rng = np.random.default_rng(2)
    levels = np.round(np.arange(17) * 255 / 16).astype(int)
    values = levels / 127.5 - 1.0
    q = rng.dirichlet(np.full(17, 0.7), size=(2, 2, 1))
    log_q = np.full((2, 2, 1, 256), -np.inf)
    log_q[..., levels] = np.log(q)
    index = rng.integers(0, 17, size=(8, 2, 2, 1))
    x = values[index] + rng.uniform(-1, 1, size=index.shape) / 256
    gamma_0 = -13.3  # and gamma_1 = 12, where q(z_1) is N(0, I) to within 1e-5 nats
    model = vdm.VDMModel(_ConstantLogits(log_q), head="categorical", gamma_min=gamma_0, gamma_max=12.0)
    process = processes.VPGamma(model.gamma)
    out = samplers.ode_likelihood(
        model, process, jnp.asarray(x, jnp.float32),
        jax.random.PRNGKey(0), trace="exact", dequantize=False,
    )
    alpha_0, sigma_0 = math.sqrt(1 / (1 + math.exp(gamma_0))), math.sqrt(1 / (1 + math.exp(-gamma_0)))
    log_density = logsumexp(
        np.log(q)[None] - 0.5 * ((x[..., None] - alpha_0 * values) / sigma_0) ** 2, axis=-1
    ) - math.log(math.sqrt(2 * math.pi) * sigma_0)
    np.testing.assert_allclose(out["logp"], log_density.sum((1, 2, 3)), atol=0.01)


class _TinyLogits(nnx.Module):
    """Per-pixel logits over the 256 values from (z, time): a dense layer, so the head's eps^
    depends on the time input the network is given (one data channel)."""

    def __init__(self, *, rngs):
        self.dense = nnx.Linear(2, vdm.NUM_VALUES, rngs=rngs)

    def __call__(self, z, t):
        time = jnp.broadcast_to(t.reshape((-1,) + (1,) * (z.ndim - 1)), z.shape)
        return self.dense(jnp.concatenate([z, time], axis=-1))


@pytest.mark.parametrize("mode", ["bound", "variance"])
def test_categorical_head_schedule_gradient_is_the_bounds_own(mode):
    """A learned schedule under the categorical head, checked against central finite differences
    of the bound estimator itself (one fixed key): ``"bound"`` gives the bound's gradient in every
    schedule parameter; ``"variance"`` the bound's at the end points and, inside, that of the
    diffusion term's second moment mean(L^2) (Kingma et al. 2021, Sec. 5.3). The head reads the
    same gamma_t as the network (through the tap), so the interior has no other path."""
    model = NNXNetwork(lambda rngs: vdm.VDMModel(  # init / apply over the parameter dict
        _TinyLogits(rngs=rngs), vdm.LearnedGamma(-6.0, 4.0, features=4, rngs=rngs),
        time_scale=1.0, head="categorical",
    ))
    x0 = jnp.asarray(np.random.default_rng(0).integers(0, 256, (64, 2, 2, 1)) / 127.5 - 1.0,
                     jnp.float32)
    variables = model.init(jax.random.PRNGKey(0), x0, jnp.zeros((64,)))
    key = jax.random.PRNGKey(3)

    @jax.jit
    def terms(v):
        out = losses.vdm_loss(functools.partial(model.apply, v), functools.partial(
            model.apply, v, method="gamma"), x0, key, schedule_gradient=mode)
        return jnp.mean(out["total"]), jnp.mean(out["diffusion"] ** 2)

    grads = jax.jit(jax.grad(lambda v: terms(v)[0]))(variables)["params"]["schedule"]
    probes = {  # (layer, name, index) -> which objective's derivative it must be
        ("gamma_0",): "bound", ("gamma_1",): "bound",
        ("l2", "kernel", (0, 2)): "bound" if mode == "bound" else "second",
        ("l3", "kernel", (2, 0)): "bound" if mode == "bound" else "second",
        ("l1", "bias", (0,)): "bound" if mode == "bound" else "second",
    }
    for probe, objective in probes.items():
        def shifted(h, probe=probe):
            def move(path, p):
                keys = [k.key for k in path]
                if keys[:2] != ["params", "schedule"] or tuple(keys[2:]) != probe[:2]:
                    return p
                return p + h if len(probe) == 1 else p.at[probe[2]].add(h)

            return jax.tree_util.tree_map_with_path(move, variables)

        which = 0 if objective == "bound" else 1
        h = 1e-2
        fd = (terms(shifted(h))[which] - terms(shifted(-h))[which]) / (2 * h)
        g = grads
        for k in probe[:2]:
            g = g[k]
        g = g if len(probe) == 1 else g[probe[2]]
        np.testing.assert_allclose(g, fd, rtol=2e-2, atol=1e-3, err_msg=f"{probe} ({objective})")
