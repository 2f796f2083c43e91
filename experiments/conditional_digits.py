"""Guidance and post-hoc EMA on the digits: a class-conditional run (``digits_cond``) sampled with
classifier-free guidance (with and without the guidance interval), autoguidance by a weaker run,
and post-hoc EMA lengths, each measured with the digits classifier and Fréchet distance.

    nice -n 10 jaxdiff train --config digits_cond --workdir runs/digits_cond
    nice -n 10 jaxdiff train --config digits_cond --workdir runs/digits_cond_weak \\
        --config.model.ch=8 --config.training.num_steps=1000 \\
        "--config.training.ema.sigma_rels=()" --config.training.ema.snapshot_every=0
    nice -n 10 python experiments/conditional_digits.py --run runs/digits_cond \\
        --weak runs/digits_cond_weak --num 500

For every setting: ``num`` samples, an equal number of each class (``--label all``), EDM's Heun
sampler on the run's grid (18 steps, 35 evaluation points; guidance evaluates two networks at
each). Writes ``experiments/figures/conditional_digits.{jsonl,json,png}`` after each setting (a
rerun measures only the settings missing from the ``.jsonl``):

- ``accuracy``: the share of samples the classifier puts in the requested class;
- ``fd``: the digits Fréchet distance to the test split; ``precision``/``recall`` (k = 3) of the
  classifier features against the test digits (Kynkäänniemi et al. 2019).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np

from jaxdiff import data, ema, train
from jaxdiff.metrics import digits, diversity

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

SCALES = (0.0, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)  # the interval's from 1.5
INTERVAL = (0.3, 5.0)  # sigma range of the guidance interval
AUTO_SCALES = (1.5, 2.0)
SIGMA_RELS = (0.02, 0.03, 0.05, 0.10, 0.15, 0.22)


def make_sampler(run, weak_run, *, num: int, labels, interval):
    """``draw(variables, scale, key) -> uint8 samples``, compiled once; guided by classifier-free
    guidance, or by autoguidance when ``weak_run`` is given."""

    @jax.jit
    def draw(variables, weak_variables, scale, key):
        weak = None if weak_run is None else (weak_run.experiment.model, weak_variables)
        guidance = train.Guidance(labels, scale, interval, weak)
        sample = train.build_sampler(run.config, run.experiment, guidance=guidance)
        return sample(variables, key, num)

    weak_variables = None if weak_run is None else weak_run.variables
    return lambda variables, scale, key: data.to_uint8(
        jax.device_get(draw(variables, weak_variables, jnp.float32(scale), key)))


def wait_for_run(workdir, minutes: float = 30.0):
    """The run of ``workdir``, waiting for its first checkpoint (a weak run may still train)."""
    deadline = time.time() + 60 * minutes
    while True:
        try:
            return train.load_run(workdir)
        except FileNotFoundError:
            if time.time() > deadline:
                raise
            time.sleep(15)


def measure(samples, labels, *, params, reference, real_features) -> dict:
    quality = digits.sample_quality(samples, params=params, reference=reference)
    out = digits.classify(params, samples)
    precision, recall = diversity.precision_recall(real_features, out["features"], k=3)
    row = dict(fd=quality["fd"], confidence=quality["confidence"], precision=precision, recall=recall)
    if labels is not None:
        row["accuracy"] = float(np.mean(np.argmax(out["probs"], axis=1) == np.asarray(labels)))
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True)
    parser.add_argument("--weak", required=True, help="the weaker run for autoguidance")
    parser.add_argument("--num", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--outdir", default="experiments/figures")
    args = parser.parse_args()
    outdir = Path(args.outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    # One JSON line per setting, written as it is measured; a rerun skips the settings there.
    rows_file = outdir / "conditional_digits.jsonl"
    rows = [json.loads(line) for line in rows_file.read_text().splitlines()] if rows_file.exists() else []
    done = {(r["kind"], r["scale"], r.get("sigma_rel")) for r in rows}
    params = digits.load_classifier()
    reference = digits.reference_statistics(params)
    real_features = digits.classify(params, digits.digits_split("test")[0])["features"]
    run = train.load_run(args.run)
    labels = jnp.arange(args.num, dtype=jnp.int32) % run.experiment.num_classes
    key = jax.random.PRNGKey(args.seed)
    kw = dict(params=params, reference=reference, real_features=real_features)
    nfe = 2 * run.config.sampling.num_steps - 1
    meta = dict(run=args.run, weak=args.weak, num=args.num, seed=args.seed, interval=INTERVAL,
                sampler=f"EDM Heun, {run.config.sampling.num_steps} steps, {nfe} evaluation points; "
                        "guided: two networks at each")

    def settings(kind, scales, sigma_rels=(None,)):
        return [(s, r) for s in scales for r in sigma_rels if (kind, s, r) not in done]

    def record(kind, scale, samples, sigma_rel=None):
        row = dict(kind=kind, scale=scale, sigma_rel=sigma_rel, **measure(samples, labels, **kw))
        rows.append(row)
        with rows_file.open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)
        (outdir / "conditional_digits.json").write_text(json.dumps(dict(meta=meta, rows=rows), indent=1) + "\n")
        plot(rows, outdir / "conditional_digits.png")

    tic = time.time()
    for kind, interval, scales in (("cfg", None, SCALES), ("cfg_interval", INTERVAL, SCALES[2:5])):
        todo = settings(kind, scales)
        if todo:
            draw = make_sampler(run, None, num=args.num, labels=labels, interval=interval)
            for scale, _ in todo:
                record(kind, scale, draw(run.variables, scale, key))
    todo = settings("autoguidance", AUTO_SCALES)
    if todo:
        draw = make_sampler(run, wait_for_run(args.weak), num=args.num, labels=labels, interval=None)
        for scale, _ in todo:
            record("autoguidance", scale, draw(run.variables, scale, key))
    # Post-hoc EMA lengths at scale 1 (the conditional model, one network per evaluation).
    todo = settings("posthoc_ema", (1.0,), SIGMA_RELS)
    if todo:
        conditional = jax.jit(lambda v, k: train.build_sampler(
            run.config, run.experiment, guidance=train.Guidance(labels))(v, k, args.num))
        snapshots = ema.load_snapshots(Path(args.run) / ema.SNAPSHOT_DIR, run.variables["params"])
        for _, sigma_rel in todo:
            variables = {"params": ema.posthoc_ema(snapshots, sigma_rel=sigma_rel)}
            samples = data.to_uint8(jax.device_get(conditional(variables, key)))
            record("posthoc_ema", 1.0, samples, sigma_rel=sigma_rel)
    print(f"measured in {time.time() - tic:.0f} s")


def plot(rows, path):
    def series(kind, field, x="scale"):
        chosen = [r for r in rows if r["kind"] == kind]
        return [r[x] for r in chosen], [r[field] for r in chosen]

    fig, axes = plt.subplots(1, 4, figsize=(17, 3.8))
    styles = dict(cfg="o-", cfg_interval="s--", autoguidance="^:")
    names = dict(cfg="CFG", cfg_interval=f"CFG, interval {INTERVAL}", autoguidance="autoguidance")
    for kind in styles:
        axes[0].plot(*series(kind, "accuracy"), styles[kind], label=names[kind])
        axes[1].plot(*series(kind, "fd"), styles[kind], label=names[kind])
        xs, ps = series(kind, "precision")
        axes[2].plot(xs, ps, styles[kind], label=f"{names[kind]}: precision")
        axes[2].plot(*series(kind, "recall"), styles[kind], alpha=0.5, label=f"{names[kind]}: recall")
    axes[0].set(xlabel="guidance scale", ylabel="share in the requested class", title="class accuracy")
    axes[1].set(xlabel="guidance scale", ylabel="digits Fréchet distance", title="Fréchet distance")
    axes[2].set(xlabel="guidance scale", title="precision / recall (k = 3)")
    xs, fds = series("posthoc_ema", "fd", x="sigma_rel")
    if xs:
        order = np.argsort(xs)
        xs, fds = np.asarray(xs)[order], np.asarray(fds)[order]
        best = int(np.argmin(fds))
        axes[3].plot(xs, fds, "o-", label="post-hoc EMA (scale 1)")
        axes[3].plot([xs[best]], [fds[best]], "r*", markersize=14, label=f"best: {xs[best]}")
    ema_rows = series("ema_decay", "fd")[1] or series("cfg", "fd")[1][1:2]
    if ema_rows:
        axes[3].axhline(ema_rows[0], color="gray", ls=":", label="the run's EMA 0.999")
    axes[3].set(xlabel="sigma_rel", ylabel="digits Fréchet distance", title="post-hoc EMA length")
    for ax in axes:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
