"""Ho et al. (2020), Table 2, on the 8x8 digits: what the network predicts (the posterior mean
mu~ or the noise eps), what it is trained on (the true bound L or the plain squared error), and
whether the reverse variance is fixed or learned, each cell a ``digits_ddpm`` run (linear
schedule, T = 1000, the same network, steps and seed) that differs only in those three options:

* mu~ with L_simple is ||mu~ - mu~_theta||^2 (their "mu~ MSE"), eps with it is L_simple;
* a learned diagonal variance (``variance="learned"``, the log-variance itself, as theirs) is
  trained by L (the bound cells) or by L_hybrid = L_simple + 0.001 L_vlb (Nichol & Dhariwal
  2021; the squared-error cells, which have no gradient for the variance otherwise);
* fixed is the isotropic sigma_t^2 = beta_t (``fixed_large``, their CIFAR-10 choice).

Each cell reports the bound on the 359 test digits (bits/dim, stderr) and the digits Fréchet
distance of 1,000-step ancestral samples. A run whose loss stops being finite is reported as
diverged at its step (their table's "--").

    python experiments/ho_table2.py [--runs runs/table2] [--steps 3000] [--num 256] [--only CELL ...]

trains any missing cell into ``RUNS/CELL`` and evaluates it into ``RUNS/CELL/table2.json`` (a
rerun reuses both; ``--only`` does some cells, e.g. in two processes at once); once every cell
has its result it writes ``experiments/figures/ho_table2.{md,json}``.
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

from jaxdiff import cli, evaluate, train
from jaxdiff.engine import TrainingError
from _timing import timed_train

PREDICTIONS = {"mean": "mu~", "eps": "eps"}
OBJECTIVES = {"vlb": "L (true bound)", "simple": "squared error"}
VARIANCES = {"learned": "learned diagonal", "fixed_large": "fixed isotropic"}
CELLS = {
    f"{p}_{o}_{v}": (p, o, v) for p, o, v in itertools.product(PREDICTIONS, OBJECTIVES, VARIANCES)
}
# Ho et al. (2020), Table 2 (CIFAR-10, FID; "--": training unstable) and their Table 1 (NLL).
PAPER_FID = {
    "mean_vlb_learned": "23.69", "mean_vlb_fixed_large": "13.22", "mean_simple_fixed_large": "--",
    "eps_vlb_learned": "--", "eps_vlb_fixed_large": "13.51", "eps_simple_fixed_large": "3.17",
}


def cell_config(cell: str, steps: int):
    """The ``digits_ddpm`` config of one cell."""
    prediction, objective, variance = CELLS[cell]
    config = cli.load_config_file("digits_ddpm")
    config.name = f"table2_{cell}"
    config.training.num_steps = steps
    config.diffusion.prediction = prediction
    config.diffusion.variance = variance
    if objective == "vlb":
        config.loss = dict(name="vlb")
    elif variance == "learned":
        config.loss = dict(name="hybrid", vlb_weight=0.001)
    return config


def run_cell(cell: str, runs: Path, steps: int, num: int) -> dict:
    """Trains (or reuses) and evaluates one cell; the result is cached in ``table2.json``."""
    workdir = runs / cell
    cached = workdir / "table2.json"
    if cached.is_file():
        return json.loads(cached.read_text())
    try:
        timing = timed_train(cell_config(cell, steps), workdir, log=print)
    except TrainingError as e:
        result = dict(cell=cell, diverged=str(e).splitlines()[0])
    else:
        ev = evaluate.evaluate_run(train.load_run(workdir), num_samples=num, log=print)
        result = dict(
            cell=cell, train_s=timing["seconds"], bpd=ev["total_bpd"], stderr=ev["stderr_bpd"],
            decoder_bpd=ev["decoder_bpd"], fd=ev["digits_fd"], step=ev["step"],
        )
    cached.write_text(json.dumps(result) + "\n")
    print(json.dumps(result), flush=True)
    return result


def write_table(results: list[dict], out: Path) -> None:
    lines = [
        "| prediction | objective | variance | bits/dim (stderr) | L_0 | digits FD | Ho et al. FID |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        p, o, v = CELLS[r["cell"]]
        paper = PAPER_FID.get(r["cell"], "")
        if "diverged" in r:
            cells = ["diverged", "", "--"]
        else:
            cells = [f"{r['bpd']:.3f} ({r['stderr']:.3f})", f"{r['decoder_bpd']:.3f}", f"{r['fd']:.1f}"]
        lines.append("| " + " | ".join([PREDICTIONS[p], OBJECTIVES[o], VARIANCES[v], *cells, paper]) + " |")
    (out / "ho_table2.md").write_text("\n".join(lines) + "\n")
    (out / "ho_table2.json").write_text(json.dumps(results, indent=1) + "\n")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="runs/table2")
    parser.add_argument("--steps", type=int, default=3000, help="training steps of every cell")
    parser.add_argument("--num", type=int, default=256, help="samples for the Fréchet distance")
    parser.add_argument("--only", nargs="+", choices=sorted(CELLS), help="just these cells")
    parser.add_argument("--out", default="experiments/figures")
    args = parser.parse_args()
    runs, out = Path(args.runs), Path(args.out)
    runs.mkdir(parents=True, exist_ok=True)
    results = [run_cell(cell, runs, args.steps, args.num) for cell in args.only or CELLS]
    if not args.only:
        out.mkdir(parents=True, exist_ok=True)
        write_table(results, out)


if __name__ == "__main__":
    main()
