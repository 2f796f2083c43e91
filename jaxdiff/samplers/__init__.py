"""Samplers: pure functions over any ``model_fn(x_t, t)`` (or ``score_fn(x, sigma)``), each one
compiled program (``lax.scan``) for the whole chain, with its single update step public.

Every sampler accepts ``return_info=True`` to return a :class:`SamplerOutput` (samples,
trajectory every ``trajectory_every`` steps, number of model evaluations).
"""

from jaxdiff.samplers._common import SamplerOutput as SamplerOutput
