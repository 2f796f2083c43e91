"""Class-conditional EDM (Karras et al. 2022) on scikit-learn's 8x8 digits, with post-hoc EMA
(Karras et al. 2024, EDM2) and classifier-free guidance (Ho & Salimans 2022).

The digits EDM run (``digits_edm``: the digits U-Net behind eq. 7's preconditioning, Heun on
the Karras grid) with a class embedding (``num_classes=10``; label 10 is the null label, drawn
for 10 % of the training examples), 4,000 steps of 64, and two power-function EMAs (sigma_rel
0.05 and 0.10) saved every 200 steps in ``WORKDIR/ema/``. About 5 minutes on a 2-core CPU.

    jaxdiff train --config digits_cond
    jaxdiff sample --workdir runs/digits_cond --label all --guidance 2 --num 100
    jaxdiff sample --workdir runs/digits_cond --label 3 --guidance 3 --guidance_interval 0.1,2
    jaxdiff sample --workdir runs/digits_cond --label all --ema_std 0.08   # post-hoc EMA length
"""

from jaxdiff.configs import digits_edm


def get_config():
    config = digits_edm.get_config()
    config.name = "digits_cond"
    config.model.num_classes = 10
    config.training.label_dropout = 0.1
    config.training.num_steps = 4000
    config.training.checkpoint_every = 1000
    config.training.sample_every = 0
    config.training.ema = dict(sigma_rels=(0.05, 0.10), snapshot_every=200)
    return config
