"""Reflow and one-step distillation (Liu et al. 2023) on scikit-learn's 8x8 digits, from a
trained teacher: 4,096 (noise, sample) pairs of the teacher's ODE (deterministic Heun, 18 steps
on the Karras grid), the 2-rectified flow trained on them, and from step 2,000 on its
distillation: new pairs from its own ODE (8 Heun steps, the same noise) and only t = 1 trained
(the one-step map x_0 = x_1 - v(x_1, 1)). The same U-Net as the digits flow. About 0.1 CPU-s a
step (measured, the redraw included): 3,000 steps in under 3 min on 2 idle cores, besides the
teacher's pairs.

    jaxdiff train --config digits_reflow --config.distillation.teacher=runs/digits_flow
    jaxdiff sample --workdir runs/digits_reflow --steps 1
"""

from ml_collections.config_dict import placeholder

from jaxdiff.configs import digits_ddpm


def get_config():
    config = digits_ddpm.get_config()
    config.name = "digits_reflow"
    config.family = "fewstep"
    del config.diffusion, config.loss
    config.fewstep = dict(method="reflow")
    # from step distill_from on: the one-step distillation, on pairs redrawn by pair_steps Heun
    # steps of the 2-rectified flow itself
    config.reflow = dict(time_scale=1000.0, distill_from=2000, pair_steps=8)
    config.distillation = dict(
        teacher=placeholder(str),  # required: a workdir of a trained ddpm, edm or flow run
        teacher_steps=18,  # Heun steps of the teacher's ODE per pair (35 evaluations)
        num_pairs=4096,
    )
    config.training.num_steps = 3000
    config.sampling = dict(num_samples=100, num_steps=1)
    return config
