"""The default run (``jaxdiff train`` with no arguments): candidates at the same budget.

The budget is 3 minutes on 2 idle cores, about 256 CPU seconds (user + sys; the default run
used 1.42 CPU seconds per wall second on the idle machine, 360 at the nominal 2). On a shared
machine wall time says little, so every candidate trains the same number of steps, chosen from
the CPU time per step of the default network (``--calibrate``: 200 and 400 steps, no samples;
the difference is the cost of 200 steps, the rest compilation and start-up), and each row
reports its own wall and CPU time.

    nice -n 10 python experiments/default_run.py --calibrate      # budget_steps: 3,750
    nice -n 10 python experiments/default_run.py --candidate ddpm --steps 3500
    nice -n 10 python experiments/default_run.py --candidate edm --steps 3500
    nice -n 10 python experiments/default_run.py --candidate flow --steps 3500
    python experiments/default_run.py --table

Each candidate trains in ``runs/default_run/NAME`` (timed by ``experiments/_timing.py``,
compilation and the end-of-training grid of 100 samples included), then draws 400 samples
with the EMA weights and its config's sampler, measured by the digits classifier (mean
confidence of its top class) and the digits Fréchet distance against the 359 test digits
(:mod:`jaxdiff.metrics.digits`). Rows go to ``experiments/figures/default_run.jsonl``;
``--table`` writes ``default_run.md`` with the real digits' row (400 train digits).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import jax

from jaxdiff import cli, data, train
from jaxdiff.metrics import digits
from _timing import timed_train

# CPU seconds of 3 minutes on 2 idle cores: 1.42 CPU s per wall second, the default run's
# idle timing (2 min 29 s wall, 212 CPU s; docs/results/generative.md), not the nominal 2
CPU_BUDGET = 256.0
NUM_SAMPLES = 400
FIGURES = Path(__file__).resolve().parent / "figures"
ROWS = FIGURES / "default_run.jsonl"

# name -> (config, overrides, what the table says of it)
CANDIDATES = {
    "ddpm": ("digits_ddpm", {}, "DDPM, eps, linear T = 1000 / ancestral, 1000 steps"),
    "edm": ("digits_edm", {}, "EDM (eq. 7 preconditioning) / Heun, 18 steps (35 NFE)"),
    "flow": ("digits_flow", {}, "flow matching, logit-normal t / Heun, 20 steps (40 NFE)"),
}


def config_of(name: str, steps: int):
    config_name, overrides, _ = CANDIDATES[name]
    config = cli.load_config_file(config_name)
    config.training.num_steps = steps
    config.training.sample_every = 0  # one grid, at the end
    config.training.checkpoint_every = steps
    config.update_from_flattened_dict(overrides)
    return config


def calibrate(runs: Path) -> dict:
    """CPU seconds per step of the default network and the fixed cost (start-up, compilation)."""
    cpu = {}
    for steps in (200, 400):
        config = config_of("ddpm", steps)
        config.sampling.num_samples = 0
        cpu[steps] = timed_train(config, runs / f"calibrate_{steps}")["cpu_seconds"]
    per_step = (cpu[400] - cpu[200]) / 200
    fixed = cpu[200] - 200 * per_step
    return dict(cpu_200=cpu[200], cpu_400=cpu[400], per_step=per_step, fixed=fixed,
                budget_steps=int((CPU_BUDGET - fixed) / per_step))


def measure(workdir: Path, *, seed: int = 0) -> dict:
    """Confidence and Fréchet distance of 400 samples with the run's EMA weights."""
    run = train.load_run(workdir)
    draw = jax.jit(lambda state, key: run.family.sample(state, key, NUM_SAMPLES))
    samples = data.to_uint8(jax.device_get(draw(run.state, jax.random.key(seed))))
    quality = digits.sample_quality(samples)
    return {"ema": dict(fd=quality["fd"], confidence=quality["confidence"])}


def real_row() -> dict:
    images, _ = digits.digits_split("train")
    quality = digits.sample_quality(images[:NUM_SAMPLES])
    return dict(fd=quality["fd"], confidence=quality["confidence"])


HEADER = """# The default run: candidates at 3 minutes on 2 cores

Written by `python experiments/default_run.py --table` (module docstring: the commands). Every
candidate trains the same U-Net (0.16M parameters) for the same steps of 64 digits; the budget
in steps comes from `--calibrate` (CPU seconds per step of this network and the fixed cost of
start-up and compilation). CPU time is the process's user + sys, compilation and the
end-of-training grid of 100 samples included; wall time is that of a machine shared by five
engineers (load average 14-21 on 2 cores), an upper bound. Confidence: the digits classifier's
mean top-class probability; digits FD: the Fréchet distance of its features to the 359 test
digits; both of 400 samples (seed 0), the EMA weights, the candidate's sampler.

"""


def table(rows, real) -> str:
    """One line per candidate and EMA (the run's, then each post-hoc length), then real digits."""
    lines = [
        "| candidate | process / sampler | network | EMA | steps x batch | wall s | CPU s | "
        "confidence | digits FD (400) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        for i, (ema_name, q) in enumerate(r["quality"].items()):
            ema_text = r["ema"] if ema_name == "ema" else f"post-hoc, {ema_name}"
            head = (f"| {r['name']} | {r['what']} | {r['network']} | {ema_text} | {r['steps']} x "
                    f"{r['batch']} | {r['seconds']:.0f} | {r['cpu_seconds']:.0f} |") if i == 0 else (
                    f"| | | | {ema_text} | | | |")
            lines.append(f"{head} {q['confidence']:.3f} | {q['fd']:.2f} |")
    lines.append(f"| real train digits (400) | | | | | | | {real['confidence']:.3f} | {real['fd']:.2f} |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="runs/default_run")
    parser.add_argument("--calibrate", action="store_true")
    parser.add_argument("--candidate", choices=sorted(CANDIDATES))
    parser.add_argument("--steps", type=int)
    parser.add_argument("--table", action="store_true")
    args = parser.parse_args()
    runs = Path(args.runs)
    if args.calibrate:
        print(json.dumps(calibrate(runs)))
    if args.candidate:
        config = config_of(args.candidate, args.steps)
        workdir = runs / args.candidate
        timing = timed_train(config, workdir)
        m = config.model
        row = dict(
            name=args.candidate, what=CANDIDATES[args.candidate][2],
            network=f"U-Net ch {m.ch}, ch_mult {tuple(m.ch_mult)}, {m.num_res_blocks} res/level",
            ema=f"{config.training.ema_decay} (warm-up)" if config.training.ema_warmup
            else str(config.training.ema_decay),
            steps=args.steps, batch=config.training.batch_size,
            seconds=timing["seconds"], cpu_seconds=timing["cpu_seconds"], quality=measure(workdir),
        )
        print(json.dumps(row))
        with ROWS.open("a") as f:
            f.write(json.dumps(row) + "\n")
    if args.table:
        rows = [json.loads(line) for line in ROWS.read_text().splitlines()]
        text = HEADER + table(rows, real_row())
        (FIGURES / "default_run.md").write_text(text)
        print(text)


if __name__ == "__main__":
    main()
