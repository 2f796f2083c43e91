"""Few-step generation: consistency models (Song et al. 2023; Song & Dhariwal 2024), MeanFlow
(Geng et al. 2025) and reflow (Liu et al. 2023), as pure losses and samplers over plain model
functions. Each works on its own, with a teacher or without one; ``config.family = "fewstep"``
trains them through the driver (:mod:`jaxdiff.families.fewstep`).
"""

from jaxdiff.fewstep import consistency, meanflow, reflow
from jaxdiff.fewstep.consistency import DISTANCES as DISTANCES
from jaxdiff.fewstep.consistency import consistency_denoise as consistency_denoise
from jaxdiff.fewstep.consistency import consistency_distillation_loss as consistency_distillation_loss
from jaxdiff.fewstep.consistency import consistency_precondition as consistency_precondition
from jaxdiff.fewstep.consistency import consistency_scalings as consistency_scalings
from jaxdiff.fewstep.consistency import consistency_training_loss as consistency_training_loss
from jaxdiff.fewstep.consistency import curriculum_sigmas as curriculum_sigmas
from jaxdiff.fewstep.consistency import discretization_steps as discretization_steps
from jaxdiff.fewstep.consistency import huber_constant as huber_constant
from jaxdiff.fewstep.consistency import lognormal_level_logits as lognormal_level_logits
from jaxdiff.fewstep.consistency import multistep_consistency_sample as multistep_consistency_sample
from jaxdiff.fewstep.consistency import pseudo_huber as pseudo_huber
from jaxdiff.fewstep.meanflow import adaptive_weight as adaptive_weight
from jaxdiff.fewstep.meanflow import guided_velocity as guided_velocity
from jaxdiff.fewstep.meanflow import meanflow_loss as meanflow_loss
from jaxdiff.fewstep.meanflow import meanflow_sample as meanflow_sample
from jaxdiff.fewstep.meanflow import meanflow_target as meanflow_target
from jaxdiff.fewstep.meanflow import sample_time_pairs as sample_time_pairs
from jaxdiff.fewstep.reflow import one_step_time as one_step_time
from jaxdiff.fewstep.reflow import reflow_loss as reflow_loss
from jaxdiff.fewstep.reflow import reflow_pairs as reflow_pairs
from jaxdiff.fewstep.reflow import straightness as straightness

__all__ = [*consistency.__all__, *meanflow.__all__, *reflow.__all__]
