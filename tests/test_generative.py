"""The VAE's bounds and the GAN's objectives against closed forms.

VAE: probabilistic PCA (x = W z + mu + sigma e) has an exact marginal likelihood and an exact
Gaussian posterior; with orthogonal columns of W the posterior is diagonal, so the VAE's
encoder family contains it. GAN: for two Gaussians in 1-D the optimal discriminator, the
Jensen-Shannon divergence (by quadrature) and the generator gradients are known.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from scipy import integrate, stats

from jaxdiff.generative import gan, vae

# --- probabilistic PCA ---------------------------------------------------------------------------

_K, _D, _SIGMA = 2, 4, 0.5
_Q = np.linalg.qr(np.random.default_rng(0).standard_normal((_D, _K)))[0]
_W = _Q * np.array([1.5, 0.7])  # orthogonal columns: W^T W diagonal
_MU = np.array([0.3, -0.2, 0.1, 0.5])


def _ppca_data(n, seed=1):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, _K))
    return (z @ _W.T + _MU + _SIGMA * rng.standard_normal((n, _D))).astype(np.float32)


def _ppca_log_likelihood(x, z):
    """log p(x | z) = log N(x; W z + mu, sigma^2 I), the model's decoder, [B]."""
    mean = z @ jnp.asarray(_W.T, jnp.float32) + _MU
    return jnp.sum(jax.scipy.stats.norm.logpdf(x, mean, _SIGMA), axis=-1)


def _exact_log_marginal(x):
    """log p(x) = log N(x; mu, W W^T + sigma^2 I) (Tipping & Bishop 1999, eq. 6)."""
    return stats.multivariate_normal(_MU, _W @ _W.T + _SIGMA**2 * np.eye(_D)).logpdf(x)


def _exact_posterior(x):
    """p(z | x) = N(M^-1 W^T (x - mu), sigma^2 M^-1), M = W^T W + sigma^2 I (diagonal here)."""
    m_diag = np.diag(_W.T @ _W) + _SIGMA**2
    return (x - _MU) @ _W / m_diag, np.broadcast_to(np.log(_SIGMA**2 / m_diag), (len(x), _K))


def _gaussian_kl(m1, logv1, m2, logv2):
    """KL(N(m1, diag v1) || N(m2, diag v2)) per row, written out as numpy."""
    v1, v2 = np.exp(logv1), np.exp(logv2)
    return 0.5 * np.sum(v1 / v2 + (m2 - m1) ** 2 / v2 - 1 + logv2 - logv1, axis=-1)


def _mean_and_stderr(values, copies):
    """values [N * copies] for N points, each repeated ``copies`` times -> mean, stderr [N]."""
    v = np.asarray(values, np.float64).reshape(-1, copies)
    return v.mean(axis=1), v.std(axis=1, ddof=1) / np.sqrt(copies)


def _single_sample_elbos(x, mean, logvar, copies, seed=0):
    """``copies`` one-sample ELBO estimates of each point (the points tiled), as [N * copies]."""
    rep = lambda a: jnp.repeat(jnp.asarray(a, jnp.float32), copies, axis=0)  # noqa: E731
    terms = vae.elbo_terms(_ppca_log_likelihood, rep(mean), rep(logvar), rep(x), jax.random.key(seed))
    return terms["elbo"]


def test_elbo_with_the_exact_posterior_is_the_log_likelihood():
    x = _ppca_data(6)
    mean, logvar = _exact_posterior(x)
    est, se = _mean_and_stderr(_single_sample_elbos(x, mean, logvar, 20000), 20000)
    exact = _exact_log_marginal(x)
    np.testing.assert_array_less(np.abs(est - exact), 4 * se + 1e-3)
    # log p(x, z) - log q(z | x) is the same for every z when q is the posterior: the
    # importance weights are constant and every IWAE estimate, k = 1 included, is log p(x).
    iwae = vae.iwae_bound(_ppca_log_likelihood, mean, logvar, x, jax.random.key(1), num_samples=1)
    np.testing.assert_allclose(iwae, exact, atol=2e-4)


def test_elbo_gap_of_a_wrong_encoder_is_the_kl_to_the_posterior():
    x = _ppca_data(6)
    true_mean, true_logvar = _exact_posterior(x)
    mean = true_mean + np.array([0.4, -0.3])
    logvar = true_logvar + np.array([0.8, -0.6])
    est, se = _mean_and_stderr(_single_sample_elbos(x, mean, logvar, 20000), 20000)
    gap = _exact_log_marginal(x) - est
    kl = _gaussian_kl(mean, logvar, true_mean, true_logvar)
    assert np.all(kl > 0.1)
    np.testing.assert_array_less(np.abs(gap - kl), 4 * se + 1e-3)


def test_iwae_tightens_from_the_elbo_towards_the_log_likelihood():
    x = _ppca_data(4)
    true_mean, true_logvar = _exact_posterior(x)
    mean, logvar = true_mean + 0.5, true_logvar + 1.0
    copies = 2000
    rep = lambda a: jnp.repeat(jnp.asarray(a, jnp.float32), copies, axis=0)  # noqa: E731

    def bound(k):
        est = vae.iwae_bound(
            _ppca_log_likelihood, rep(mean), rep(logvar), rep(x), jax.random.key(k), num_samples=k
        )
        return _mean_and_stderr(est, copies)

    exact = _exact_log_marginal(x)
    elbo, elbo_se = _mean_and_stderr(_single_sample_elbos(x, mean, logvar, copies), copies)
    l1, se1 = bound(1)
    np.testing.assert_array_less(np.abs(l1 - elbo), 4 * np.hypot(se1, elbo_se))  # L_1 = ELBO
    l10, se10 = bound(10)
    l100, se100 = bound(100)
    assert np.all(l1 + 4 * se1 < l10) and np.all(l10 + 4 * se10 < l100)
    np.testing.assert_array_less(l100, exact + 4 * se100)
    assert np.all(exact - l100 < 0.1 * (exact - l1))


def test_reparameterization_gradient_agrees_with_score_function_and_closed_form():
    x = jnp.asarray(_ppca_data(1))
    m, lv = _exact_posterior(np.asarray(x))
    m, lv = jnp.asarray(m + 0.3, jnp.float32), jnp.asarray(lv - 0.4, jnp.float32)
    n = 100000

    def one_sample(key):
        def reconstruction(mean, logvar):
            terms = vae.elbo_terms(_ppca_log_likelihood, mean, logvar, x, key)
            return terms["reconstruction"][0]

        return jnp.concatenate(jax.grad(reconstruction, argnums=(0, 1))(m, lv), axis=None)

    keys = jax.random.split(jax.random.key(0), n)
    reparam, reparam_se = _mean_and_stderr(jax.vmap(one_sample)(keys).T.reshape(-1), n)

    # score function: E_q[f(z) grad log q(z)], with a baseline from independent samples
    eps = np.random.default_rng(1).standard_normal((2, n, _K))
    s, mm, lvv = np.exp(0.5 * np.asarray(lv)), np.asarray(m), np.asarray(lv)
    z, z_base = mm + s * eps[0], mm + s * eps[1]
    f = np.asarray(_ppca_log_likelihood(jnp.broadcast_to(x, (n, _D)), jnp.asarray(z, jnp.float32)))
    baseline = np.asarray(
        _ppca_log_likelihood(jnp.broadcast_to(x, (n, _D)), jnp.asarray(z_base, jnp.float32))
    ).mean()
    score = np.concatenate([(z - mm) / s**2, 0.5 * ((z - mm) ** 2 / s**2 - 1.0)], axis=1)
    score_fn, score_se = _mean_and_stderr(((f - baseline)[:, None] * score).T.reshape(-1), n)

    np.testing.assert_array_less(np.abs(reparam - score_fn), 4 * np.hypot(reparam_se, score_se))
    # and both agree with the closed form of E_q log N(x; W z + mu, sigma^2 I):
    # d/dm = W^T (x - W m - mu) / sigma^2, d/dlogvar_j = -v_j |W_j|^2 / (2 sigma^2)
    xn = np.asarray(x[0], np.float64)
    exact = np.concatenate([
        _W.T @ (xn - _W @ mm[0] - _MU) / _SIGMA**2,
        -np.exp(lvv[0]) * np.sum(_W**2, axis=0) / (2 * _SIGMA**2),
    ])
    np.testing.assert_array_less(np.abs(reparam - exact), 4 * reparam_se + 1e-4)
    np.testing.assert_array_less(np.abs(score_fn - exact), 4 * score_se + 1e-4)
    assert np.all(reparam_se < score_se)  # the reason for the trick


def test_vae_bpd_of_a_fixed_decoder_is_the_discretised_gaussian_in_bits():
    images = np.random.default_rng(0).integers(0, 256, (3, 4, 4, 1))
    x = jnp.asarray(images / 127.5 - 1.0, jnp.float32)
    mu, log_scale = 0.1, np.log(0.3)

    def encode_fn(x):
        return jnp.zeros((x.shape[0], 2)), jnp.zeros((x.shape[0], 2))  # q = the prior: KL = 0

    def log_likelihood_fn(x, z):
        return vae.discretized_decoder_log_likelihood(x, jnp.full_like(x, mu), jnp.full_like(x, log_scale))

    bpd = functools.partial(vae.vae_bpd, encode_fn, log_likelihood_fn, iwae_samples=8)
    out = jax.jit(bpd)(x, jax.random.key(0))
    v = images / 127.5 - 1.0
    cdf = functools.partial(stats.norm.cdf, loc=mu, scale=0.3)
    p = np.where(images == 0, cdf(v + 1 / 255), np.where(images == 255, 1 - cdf(v - 1 / 255),
                                                          cdf(v + 1 / 255) - cdf(v - 1 / 255)))
    expected = -np.log2(p).mean(axis=(1, 2, 3))
    np.testing.assert_allclose(out["decoder"], expected, rtol=1e-4)
    np.testing.assert_allclose(out["prior"], 0.0, atol=1e-7)
    np.testing.assert_allclose(out["total"], expected, rtol=1e-4)
    np.testing.assert_allclose(out["iwae"], expected, rtol=1e-4)  # z is ignored: all weights equal


def test_vae_network_bound_and_prior_samples():
    model = vae.VAE(latent_dim=4, ch=8, rngs=nnx.Rngs(0))
    x = jnp.asarray(np.random.default_rng(0).integers(0, 256, (5, 8, 8, 1)) / 127.5 - 1, jnp.float32)

    @nnx.jit
    def run(model, x, key):
        encode_fn, ll_fn = vae.bind(model)
        out = vae.vae_bpd(encode_fn, ll_fn, x, key, iwae_samples=16)
        return out, vae.sample_prior(model, key, 7, decoder_noise=True)

    out, samples = run(model, x, jax.random.key(1))
    assert np.all(np.asarray(out["iwae"]) <= np.asarray(out["total"]) + 0.05)
    np.testing.assert_allclose(out["total"], out["prior"] + out["decoder"], rtol=1e-5)
    assert samples.shape == (7, 8, 8, 1) and float(jnp.abs(samples).max()) <= 1.0


def test_bad_arguments_name_themselves():
    with pytest.raises(ValueError, match="num_samples"):
        vae.elbo_terms(_ppca_log_likelihood, jnp.zeros((1, 2)), jnp.zeros((1, 2)), jnp.zeros((1, 4)),
                       jax.random.key(0), num_samples=0)
    with pytest.raises(ValueError, match="mean and logvar"):
        vae.iwae_bound(_ppca_log_likelihood, jnp.zeros((1, 2)), jnp.zeros((1, 3)), jnp.zeros((1, 4)),
                       jax.random.key(0), num_samples=2)
    with pytest.raises(ValueError, match="d_steps"):
        gan.train_step(None, jnp.zeros((2, 1)), jax.random.key(0), d_steps=0)
    with pytest.raises(ValueError, match="discriminator must be an nnx.Module"):
        gan.init_state(_Linear(rngs=nnx.Rngs(0)), lambda x: x, g_tx=optax.sgd(1.0), d_tx=optax.sgd(1.0))
    with pytest.raises(ValueError, match=r"generator holds variables other than nnx.Param \(nnx.BatchStat\)"):
        gan.init_state(nnx.BatchNorm(1, rngs=nnx.Rngs(0)), _Quadratic(rngs=nnx.Rngs(0)),
                       g_tx=optax.sgd(1.0), d_tx=optax.sgd(1.0))
    with pytest.raises(ValueError, match="VAE: image_shape must be"):
        vae.VAE(image_shape=(6, 8, 1), rngs=nnx.Rngs(0))


# --- GAN on two 1-D Gaussians --------------------------------------------------------------------

_DATA, _GEN = stats.norm(0.0, 1.0), stats.norm(1.5, 0.7)


def _jsd_by_quadrature(p, q):
    def half_kl(a):
        def f(x):
            pa, m = a.pdf(x), 0.5 * (p.pdf(x) + q.pdf(x))
            return pa * np.log(pa / m) if pa > 0 else 0.0

        return 0.5 * integrate.quad(f, -12, 14, limit=200)[0]

    return half_kl(p) + half_kl(q)


def _true_logit(x):
    return _DATA.logpdf(x) - _GEN.logpdf(x)  # logit of D* = log p_data - log p_g


def test_value_at_the_optimal_discriminator_is_twice_the_jsd_minus_log4():
    rng = np.random.default_rng(0)
    n = 400000
    real, fake = _DATA.rvs(n, random_state=rng), _GEN.rvs(n, random_state=rng)
    v = float(gan.value(jnp.asarray(_true_logit(real)), jnp.asarray(_true_logit(fake))))
    # the standard error of the two sample means
    se = np.hypot(np.std(np.log(1 + np.exp(-_true_logit(real)))),
                  np.std(np.log(1 + np.exp(_true_logit(fake))))) / np.sqrt(n)
    jsd = _jsd_by_quadrature(_DATA, _GEN)
    assert abs(v - (2 * jsd - np.log(4))) < 4 * se
    np.testing.assert_allclose(
        gan.optimal_discriminator(_DATA.pdf(0.3), _GEN.pdf(0.3)), 1 / (1 + np.exp(-_true_logit(0.3))),
        rtol=1e-12,
    )


class _Quadratic(nnx.Module):
    """logit(x) = a x^2 + b x + c: contains log p_data / p_g for two Gaussians."""

    def __init__(self, *, rngs):
        self.dense = nnx.Linear(2, 1, rngs=rngs)

    def __call__(self, x):
        x = x.reshape(x.shape[0])
        return self.dense(jnp.stack([x, x**2], axis=-1))[:, 0]


def test_trained_discriminator_approaches_the_optimal_one():
    rng = np.random.default_rng(1)
    real = jnp.asarray(_DATA.rvs(20000, random_state=rng), jnp.float32)
    fake = jnp.asarray(_GEN.rvs(20000, random_state=rng), jnp.float32)
    graph, params = nnx.split(_Quadratic(rngs=nnx.Rngs(0)))
    tx = optax.adam(0.05)

    def loss(p):
        apply = nnx.merge(graph, p)
        return gan.discriminator_loss(apply(real), apply(fake))

    def step(carry, _):
        p, s = carry
        updates, s = tx.update(jax.grad(loss)(p), s, p)
        return (optax.apply_updates(p, updates), s), None

    params = jax.jit(lambda p: jax.lax.scan(step, (p, tx.init(p)), None, length=1500)[0][0])(params)
    grid = np.linspace(-2.0, 3.0, 51)
    apply = nnx.merge(graph, params)
    d = jax.nn.sigmoid(apply(jnp.asarray(grid, jnp.float32)))
    d_star = gan.optimal_discriminator(_DATA.pdf(grid), _GEN.pdf(grid))
    np.testing.assert_allclose(d, d_star, atol=0.03)
    # on fresh samples its value approaches V(D*) = 2 JSD - log 4 from below
    n = 200000
    v = float(gan.value(apply(jnp.asarray(_DATA.rvs(n, random_state=rng), jnp.float32)),
                        apply(jnp.asarray(_GEN.rvs(n, random_state=rng), jnp.float32))))
    assert abs(v - (2 * _jsd_by_quadrature(_DATA, _GEN) - np.log(4))) < 0.01


def test_nonsaturating_gradient_is_larger_where_the_discriminator_rejects_samples():
    z = jax.random.normal(jax.random.key(0), (1000,))
    slope = 4.0

    def grads(theta, loss):
        return jax.grad(lambda th: loss(slope * (th + z)))(theta)  # G(z) = theta + z, logit = 4 x

    for theta, check in ((-3.0, "rejected"), (0.0, "even")):
        d = np.asarray(jax.nn.sigmoid(slope * (theta + z)), np.float64)
        mm = float(grads(theta, gan.minimax_generator_loss))
        ns = float(grads(theta, gan.nonsaturating_generator_loss))
        np.testing.assert_allclose(mm, -slope * d.mean(), rtol=1e-4)  # d/dlogit log(1 - D) = -D
        np.testing.assert_allclose(ns, -slope * (1 - d).mean(), rtol=1e-4)  # d/dlogit -log D = -(1 - D)
        if check == "rejected":
            assert d.mean() < 0.01 and abs(ns) > 100 * abs(mm)
        else:
            np.testing.assert_allclose(ns, mm, rtol=0.2)  # symmetric around D = 1/2


def test_r1_penalty_is_the_squared_input_gradient():
    w = jnp.asarray([0.5, -2.0, 1.0])
    x = jax.random.normal(jax.random.key(0), (6, 3))
    r1 = gan.r1_penalty(lambda y: jnp.sum(w * y**2, axis=-1), x)
    np.testing.assert_allclose(r1, np.sum((2 * np.asarray(w) * np.asarray(x)) ** 2, axis=-1), rtol=1e-5)


def test_instance_noise_distributions_and_annealing():
    x = jnp.zeros((50000,))
    gauss = gan.instance_noise(x, jax.random.key(0), scale=0.5)
    cauchy = gan.instance_noise(x, jax.random.key(1), scale=0.5, noise_fn=gan.student_t_noise)
    assert stats.kstest(np.asarray(gauss), stats.norm(0, 0.5).cdf).pvalue > 1e-3
    assert stats.kstest(np.asarray(cauchy), stats.cauchy(0, 0.5).cdf).pvalue > 1e-3
    # long tails: beyond 3 scales, ~0.27 % of Gaussian noise but ~20 % of Cauchy noise
    assert np.mean(np.abs(np.asarray(cauchy)) > 1.5) > 50 * np.mean(np.abs(np.asarray(gauss)) > 1.5)
    np.testing.assert_allclose([gan.linear_decay(s, initial=0.2, num_steps=100) for s in (0, 50, 100, 200)],
                               [0.2, 0.1, 0.0, 0.0], atol=1e-7)


class _Linear(nnx.Module):
    latent_dim = 1

    def __init__(self, *, rngs):
        self.dense = nnx.Linear(1, 1, rngs=rngs)

    def __call__(self, z):
        return self.dense(z)


@pytest.mark.parametrize(
    "options",
    [
        dict(r1_weight=1.0),
        dict(r1_weight=1.0, generator_loss=gan.minimax_generator_loss),
        dict(r1_weight=1.0, d_steps=2, noise_scale=lambda step: 0.1),
    ],
)
def test_alternating_updates_fit_a_gaussian(options):
    """G(z) = a z + b against a quadratic D: the game's fixed point is p_g = p_data, here
    N(2, 0.5^2). Without R1 these updates circle around it (Mescheder et al. 2018, Sec. 3)."""
    rngs = nnx.Rngs(0)
    tx = optax.adam(0.02, b1=0.5)
    state = gan.init_state(_Linear(rngs=rngs), _Quadratic(rngs=rngs), g_tx=tx, d_tx=tx)
    step = functools.partial(gan.train_step, ema=0.99, **options)

    def body(state, key):
        real = 2.0 + 0.5 * jax.random.normal(jax.random.fold_in(key, 1), (256, 1))
        return step(state, real, key)

    state, metrics = jax.jit(lambda s: jax.lax.scan(body, s, jax.random.split(jax.random.key(1), 3000)))(state)
    samples = np.asarray(gan.sample(nnx.merge(state.g_graph, state.ema_params), jax.random.key(2), 20000))
    assert abs(samples.mean() - 2.0) < 0.1 and abs(samples.std() - 0.5) < 0.1
    assert abs(float(metrics["d_real"][-100:].mean()) - 0.5) < 0.1  # D cannot tell them apart


# --- diversity metrics and the grid toy ----------------------------------------------------------


def test_precision_recall_by_hand():
    from jaxdiff.metrics import diversity

    real = np.arange(10.0)[:, None]  # k = 1: every real ball has radius 1
    fake = np.array([[0.5], [4.0], [20.0], [9.9]])  # 3 of 4 inside [-1, 10]
    # fake radii (k = 1): 3.5, 3.5, 10.1, 5.9; real points within them: all of 0..9
    precision, recall = diversity.precision_recall(real, fake, k=1)
    assert precision == 0.75 and recall == 1.0
    collapsed = np.zeros((5, 1))  # all on one real point: fake radii 0, covers only x = 0
    assert diversity.precision_recall(real, collapsed, k=1) == (1.0, 0.1)


def test_mode_statistics_and_entropy_by_hand():
    from jaxdiff.metrics import diversity

    centres = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    samples = np.array([[0.01, 0.0]] * 6 + [[1.0, 0.02]] * 2 + [[0.5, 0.5]] * 2)  # 2 off-mode
    s = diversity.mode_statistics(samples, centres, std=0.05, min_share=0.5)
    assert s["modes_covered"] == 2 and s["high_quality"] == 0.8  # expected count 2.5, need 1.25
    np.testing.assert_allclose(s["kl_uniform"], 0.75 * np.log(4 * 0.75) + 0.25 * np.log(4 * 0.25))
    far = diversity.mode_statistics(samples[-2:], centres, std=0.05)  # none near a mode
    assert far["modes_covered"] == 0 and far["high_quality"] == 0.0 and np.isnan(far["kl_uniform"])
    assert diversity.histogram_entropy([1, 1, 1, 1]) == 2.0 and diversity.histogram_entropy([0, 3]) == 0.0
    assert diversity.near_copy_share(np.array([[0.0], [5.0]]), np.array([[0.1]]), threshold=1.0) == 0.5


def test_gaussian_grid_modes():
    from jaxdiff import data

    source = data.gaussian_grid(num=5000)
    x = np.stack([source[i]["x"] for i in range(len(source))])
    labels = np.array([source[i]["label"] for i in range(len(source))])
    grid = 0.5 * (np.arange(5) - 2)
    for mode in (0, 7, 24):
        pts = x[labels == mode]
        np.testing.assert_allclose(pts.mean(0), [grid[mode // 5], grid[mode % 5]], atol=0.01)
        np.testing.assert_allclose(pts.std(0), 0.02, rtol=0.2)
