"""A diffusion transformer (DiT, Peebles & Xie 2023) on scikit-learn's 8x8 digits, trained by
flow matching (the digits_flow process: the linear path, logit-normal t, Heun sampling): 16
tokens of 2x2 patches, four adaLN-Zero blocks of width 64 (0.33M parameters).

    jaxdiff train --config digits_dit                 # ~5 min on a 2-core CPU
    jaxdiff sample --workdir runs/digits_dit --num 100
    jaxdiff eval --workdir runs/digits_dit            # the ODE likelihood in bits/dim
"""

from jaxdiff.configs import digits_flow


def get_config():
    config = digits_flow.get_config()
    config.name = "digits_dit"
    config.model = dict(
        name="dit_digits", patch_size=2, hidden_size=64, depth=4, num_heads=4, dtype="float32"
    )
    return config
