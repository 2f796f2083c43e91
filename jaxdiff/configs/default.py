"""Fields shared by every config; an experiment's config starts from ``get_config()`` here and
changes what differs. Values are those of Ho et al. (2020) unless an experiment says otherwise.

Names (model preset, schedule, loss, sampler, dataset) are resolved into callables once, by
``jaxdiff.train.build_experiment`` and ``build_sampler``.
"""

import ml_collections
from ml_collections.config_dict import placeholder


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.name = "default"
    config.seed = 0

    config.data = dict(
        dataset="digits",  # a built-in name (digits, swiss_roll, ...) or a TFDS name (mnist)
        split="train",
        data_dir=placeholder(str),  # TFDS data_dir; None for TFDS's default
        download=False,  # True: let TFDS download and prepare a missing dataset (network)
        random_flip=False,  # random left-right flips
        # a user's images (folder:PATH, npz:PATH; jaxdiff.data.ImageOptions):
        image_size=placeholder(int),  # resize + centre-crop to N x N; None: the images' own size
        bad_images="error",  # error | skip: an unreadable image file stops the run, or is left out
        split_seed=0,  # train / valid / test split of the images (jaxdiff.data.split_indices)
        test_fraction=0.1,
        valid_fraction=0.1,  # of train
    )
    config.model = dict(
        name="ddpm_cifar10",  # in jaxdiff.models ("mlp.MLP" in a submodule), or "package.module:factory"
        dtype="float32",  # "bfloat16" computes in bfloat16 with float32 parameters
    )
    config.diffusion = dict(
        kind="ddpm",  # "ddpm": a Schedule of T steps; "ncsn": geometric noise levels
        schedule="linear",
        num_timesteps=1000,
        prediction="eps",
        variance="fixed_large",  # fixed_small | fixed_large | learned | learned_range
    )
    config.loss = dict(name="simple")  # simple | vlb | hybrid (ddpm); dsm (ncsn)
    config.optim = dict(
        learning_rate=2e-4, warmup_steps=5000, grad_clip=1.0, b1=0.9, b2=0.999, eps=1e-8
    )
    config.training = dict(
        batch_size=128,
        num_steps=800_000,
        ema_decay=0.9999,
        ema_warmup=False,  # min(decay, (1 + n) / (10 + n)) for short runs
        log_every=100,
        checkpoint_every=10_000,
        keep_checkpoints=3,
        sample_every=50_000,  # 0: a sample grid only at the end
        # Early stopping on a held-out bound of the EMA model (diffusion runs): every `every`
        # steps (0: never) the bound on `split` (K stratified timesteps; fixed noise); the best
        # is kept in WORKDIR/best/, which eval and sample then use; training stops after
        # `patience` evaluations without a new best (0: never).
        validation=dict(every=0, split="valid", patience=0, num_timesteps=100, batch_size=256),
    )
    config.sampling = dict(
        sampler="ddpm",  # ddpm | ddim | dpm_solver | ode | langevin
        num_samples=64,  # of the PNG grids written during training; 0 for none
        num_steps=50,  # ddim / dpm_solver / ode
        ddpm_num_steps=placeholder(int),  # ddpm on a respaced schedule; None: all T steps
        eta=0.0,  # ddim
        clip_denoised=True,  # ddpm / ddim
        order=2,  # dpm_solver
        method="heun",  # ode
        steps_per_sigma=100,  # langevin
        step_lr=2e-5,  # langevin
    )
    config.sharding = dict(
        fsdp=False,  # shard parameters, EMA and optimizer state along the "data" axis (ZeRO-3)
        min_size=1024,  # arrays with fewer elements stay replicated
        model_parallel=1,  # devices of the "model" mesh axis (output features split over them)
    )
    config.distributed = dict(
        initialize=False,  # call jax.distributed.initialize (several processes or hosts)
        coordinator_address=placeholder(str),  # HOST:PORT of process 0; None: auto-detected
        num_processes=placeholder(int),
        process_id=placeholder(int),
        heartbeat_timeout_seconds=30,  # a peer silent this long stops the job
        initialization_timeout_seconds=300,  # waiting for all processes to join
    )
    return config
