"""Samplers: pure functions over any ``model_fn(x_t, t)`` and its process, each one compiled
program (``lax.scan``) for the whole chain, with its single update step public.

A sampler is a step and a time grid on one driver, which owns the keys, the trajectory and
inpainting (``mask``/``known``). Every sampler accepts ``return_info=True`` to return a
:class:`SamplerOutput` (samples, trajectory every ``trajectory_every`` steps, number of model
evaluations). The continuous-time solvers and the likelihood take any Gaussian process with
``prediction=`` eps | x0 | v | velocity | score, and call the network with
``process.model_time(t)``.
"""

from jaxdiff.samplers._common import SamplerOutput as SamplerOutput
from jaxdiff.samplers._ddim import ddim_invert as ddim_invert
from jaxdiff.samplers._ddim import ddim_invert_step as ddim_invert_step
from jaxdiff.samplers._ddim import ddim_sample as ddim_sample
from jaxdiff.samplers._ddim import ddim_step as ddim_step
from jaxdiff.samplers._ddpm import ddpm_sample as ddpm_sample
from jaxdiff.samplers._ddpm import ddpm_step as ddpm_step
from jaxdiff.samplers._dpm_solver import DPMSolverState as DPMSolverState
from jaxdiff.samplers._dpm_solver import dpm_solver_orders as dpm_solver_orders
from jaxdiff.samplers._dpm_solver import dpm_solver_pp_step as dpm_solver_pp_step
from jaxdiff.samplers._dpm_solver import dpm_solver_pp_update as dpm_solver_pp_update
from jaxdiff.samplers._dpm_solver import dpm_solver_sample as dpm_solver_sample
from jaxdiff.samplers._edm import churn_gammas as churn_gammas
from jaxdiff.samplers._edm import edm_likelihood as edm_likelihood
from jaxdiff.samplers._edm import edm_sample as edm_sample
from jaxdiff.samplers._edm import edm_step as edm_step
from jaxdiff.samplers._edm import process_denoiser as process_denoiser
from jaxdiff.samplers._edm import sigma_range as sigma_range
from jaxdiff.samplers._edm import ve_denoiser as ve_denoiser
from jaxdiff.samplers._flow import flow_likelihood as flow_likelihood
from jaxdiff.samplers._flow import flow_sample as flow_sample
from jaxdiff.samplers._grids import integer_logsnr_grid as integer_logsnr_grid
from jaxdiff.samplers._grids import karras_grid as karras_grid
from jaxdiff.samplers._grids import quadratic_time_grid as quadratic_time_grid
from jaxdiff.samplers._grids import uniform_logsnr_grid as uniform_logsnr_grid
from jaxdiff.samplers._grids import uniform_time_grid as uniform_time_grid
from jaxdiff.samplers._guidance import classifier_free_guidance as classifier_free_guidance
from jaxdiff.samplers._guidance import guided_output as guided_output
from jaxdiff.samplers._guidance import autoguidance as autoguidance
from jaxdiff.samplers._guidance import interval_scale as interval_scale
from jaxdiff.samplers._guidance import noise_level as noise_level
from jaxdiff.samplers._langevin import annealed_langevin as annealed_langevin
from jaxdiff.samplers._langevin import langevin as langevin
from jaxdiff.samplers._langevin import langevin_step as langevin_step
from jaxdiff.samplers._ode import bits_per_dim as bits_per_dim
from jaxdiff.samplers._ode import change_of_variables as change_of_variables
from jaxdiff.samplers._ode import euler_step as euler_step
from jaxdiff.samplers._ode import heun_step as heun_step
from jaxdiff.samplers._ode import ode_likelihood as ode_likelihood
from jaxdiff.samplers._ode import ode_sample as ode_sample
from jaxdiff.samplers._ode import probability_flow as probability_flow
from jaxdiff.samplers._ode import uniform_dequantize as uniform_dequantize
from jaxdiff.samplers._pc import ancestral_predictor as ancestral_predictor
from jaxdiff.samplers._pc import pc_sample as pc_sample
from jaxdiff.samplers._pc import pc_step as pc_step
from jaxdiff.samplers._pc import reverse_diffusion_predictor as reverse_diffusion_predictor
from jaxdiff.samplers._spacing import linspace_timesteps as linspace_timesteps
from jaxdiff.samplers._spacing import quadratic_timesteps as quadratic_timesteps
from jaxdiff.samplers._spacing import uniform_timesteps as uniform_timesteps
from jaxdiff.samplers._ancestral import ancestral_step as ancestral_step
from jaxdiff.samplers._ancestral import vdm_sample as vdm_sample
from jaxdiff.samplers._common import sample as sample
