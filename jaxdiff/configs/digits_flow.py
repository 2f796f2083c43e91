"""Flow matching / rectified flow (Lipman et al. 2023; Liu et al. 2023) on scikit-learn's 8x8
digits: the digits DDPM's U-Net as the velocity of the linear path x_t = (1 - t) x_0 + t eps,
trained with the logit-normal t of Esser et al. (2024), sampled with Heun's method (20 steps,
40 network evaluations). The network sees 1000 t, the range its sinusoidal embedding was made
for.

    jaxdiff train --config digits_flow                # ~3-5 min on a 2-core CPU
    jaxdiff sample --workdir runs/digits_flow --num 100 --steps 20
    jaxdiff eval --workdir runs/digits_flow           # the ODE likelihood in bits/dim
"""

from jaxdiff.configs import digits_ddpm


def get_config():
    config = digits_ddpm.get_config()
    config.name = "digits_flow"
    config.diffusion = dict(kind="flow", time_scale=1000.0)
    config.loss = dict(name="flow_matching", time_sampling="logit_normal")
    config.sampling.sampler = "flow"
    config.sampling.num_steps = 20
    config.sampling.method = "heun"  # euler | heun
    return config
