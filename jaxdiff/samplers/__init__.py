"""Samplers: pure functions over any ``model_fn(x_t, t)`` (or ``score_fn(x, sigma)``), each one
compiled program (``lax.scan``) for the whole chain, with its single update step public.

Every sampler accepts ``return_info=True`` to return a :class:`SamplerOutput` (samples,
trajectory every ``trajectory_every`` steps, number of model evaluations).
"""

from jaxdiff.samplers._common import SamplerOutput as SamplerOutput
from jaxdiff.samplers._ddim import ddim_invert as ddim_invert
from jaxdiff.samplers._ddim import ddim_invert_step as ddim_invert_step
from jaxdiff.samplers._ddim import ddim_sample as ddim_sample
from jaxdiff.samplers._ddim import ddim_sigma as ddim_sigma
from jaxdiff.samplers._ddim import ddim_step as ddim_step
from jaxdiff.samplers._ddim import ddim_update as ddim_update
from jaxdiff.samplers._ddpm import ddpm_sample as ddpm_sample
from jaxdiff.samplers._ddpm import ddpm_step as ddpm_step
from jaxdiff.samplers._inpaint import Inpaint as Inpaint
from jaxdiff.samplers._inpaint import impute as impute
from jaxdiff.samplers._inpaint import impute_sigma as impute_sigma
from jaxdiff.samplers._inpaint import impute_vp as impute_vp
from jaxdiff.samplers._inpaint import inpaint_spec as inpaint_spec
from jaxdiff.samplers._langevin import annealed_langevin as annealed_langevin
from jaxdiff.samplers._langevin import langevin as langevin
from jaxdiff.samplers._langevin import langevin_step as langevin_step
from jaxdiff.samplers._langevin import langevin_update as langevin_update
from jaxdiff.samplers._pc import ancestral_predictor as ancestral_predictor
from jaxdiff.samplers._pc import langevin_corrector_step as langevin_corrector_step
from jaxdiff.samplers._pc import model_score as model_score
from jaxdiff.samplers._pc import pc_sample as pc_sample
from jaxdiff.samplers._pc import pc_step as pc_step
from jaxdiff.samplers._pc import reverse_diffusion_predictor as reverse_diffusion_predictor
from jaxdiff.samplers._spacing import linspace_timesteps as linspace_timesteps
from jaxdiff.samplers._spacing import quadratic_timesteps as quadratic_timesteps
from jaxdiff.samplers._spacing import uniform_timesteps as uniform_timesteps
