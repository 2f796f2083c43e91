"""A variational diffusion model (VDM, Kingma et al. 2021) on scikit-learn's 8x8 digits: the
digits DDPM's U-Net with Fourier features of z (exponents 6 and 7: sin/cos of 2^n pi z as extra
input channels) and a categorical head (:func:`jaxdiff.vdm.categorical_eps`: 256 logits per
pixel, added to the pixel's own Gaussian likelihood; the denoiser is their posterior mean),
trained on the continuous-time bound (eq. 17, low-discrepancy times) with the learned monotone
schedule gamma(t) (end points on the bound, interior on the variance of the diffusion loss;
initialised linear on [-13.3, 5]), and sampled with the 1000-step ancestral chain and the
discretised decoder (1000 network evaluations).

    jaxdiff train --config digits_vdm                 # ~8 min on a shared 2-core CPU
    jaxdiff sample --workdir runs/digits_vdm --num 100 --steps 1000
    jaxdiff eval --workdir runs/digits_vdm            # the bound in bits/dim and its parts

It trains on the ``fit`` part of the train digits and keeps the state of the best bound on the
held-out ``valid`` part (``WORKDIR/best/``, what eval and sample load), as ``digits_iddpm``.

``--config.diffusion.head=eps`` makes the network predict eps itself (the paper's model);
``--config.diffusion.gamma=linear`` keeps the schedule fixed; ``--config.diffusion.num_timesteps=T``
trains and evaluates the T-step model instead of the continuous-time one.
"""

from ml_collections.config_dict import placeholder

from jaxdiff.configs import digits_ddpm


def get_config():
    config = digits_ddpm.get_config()
    config.name = "digits_vdm"
    config.diffusion = dict(
        kind="vdm",
        gamma="learned",  # learned | linear
        gamma_min=-13.3,
        gamma_max=5.0,
        gamma_features=1024,
        num_timesteps=placeholder(int),  # None: continuous time; T: the T-step model
        fourier_exponents=(6, 7),
        time_scale=1000.0,
        head="categorical",  # categorical (jaxdiff.vdm.categorical_eps) | eps
    )
    config.loss = dict(name="vdm")
    config.sampling.sampler = "vdm"
    config.sampling.num_steps = 1000
    # early stopping on the bound of the held-out valid digits, as digits_iddpm
    config.data.split = "fit"
    config.training.validation.update(every=500, split="valid", patience=3)
    return config
