"""Consistency training from scratch (Song & Dhariwal 2024, improved techniques) on
scikit-learn's 8x8 digits: the digits DDPM's U-Net as the raw network F of the consistency
function f = c_skip x + c_out F (Song et al. 2023, App. C), trained with the pseudo-Huber loss,
log-normal levels and the doubling curriculum N(k) from 10 to 160 intervals over the run, the
target network stopgrad(theta). One network evaluation per sample (``--steps 2`` or ``4`` for
multistep sampling).

    jaxdiff train --config digits_consistency          # ~0.08 CPU-s a step: <= 3 min on 2 cores
    jaxdiff sample --workdir runs/digits_consistency --steps 1
    jaxdiff eval --workdir runs/digits_consistency --num_samples 500

Consistency distillation instead, from any trained ddpm, edm or flow run (one Heun step of its
probability-flow ODE on a Karras grid of 18 levels):

    jaxdiff train --config digits_consistency --config.distillation.teacher=runs/digits_edm \\
        --workdir runs/digits_cd                       # ~0.2 CPU-s a step: <= 7 min on 2 cores
"""

from ml_collections.config_dict import placeholder

from jaxdiff.configs import digits_ddpm


def get_config():
    config = digits_ddpm.get_config()
    config.name = "digits_consistency"
    config.family = "fewstep"
    del config.diffusion, config.loss
    config.fewstep = dict(method="consistency")
    config.consistency = dict(
        sigma_min=0.002,
        sigma_max=80.0,
        rho=7.0,
        sigma_data=0.5,
        p_mean=-1.1,  # the log-normal of the levels (their eq. 10)
        p_std=2.0,
        s0=10,  # the curriculum N(k): s0 + 1 levels doubling to s1 + 1 (eq. 8)
        s1=160,
        distance="pseudo_huber",  # pseudo_huber | l2
        time_scale=1000.0,  # the network sees time_scale * c_noise = 250 ln sigma
    )
    config.distillation = dict(
        teacher=placeholder(str),  # a workdir of a trained ddpm, edm or flow run
        num_levels=18,  # the distillation grid
        solver="heun",  # euler | heun
    )
    config.optim.learning_rate = 1e-3
    config.training.num_steps = 4000
    config.training.ema_decay = 0.999
    config.sampling = dict(num_samples=100, num_steps=1)
    return config
