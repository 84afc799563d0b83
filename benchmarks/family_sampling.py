"""A few copies of every family per epoch, or every copy: which buys more validation accuracy per CPU-minute?

LC25000's ~20 copies of each original are rotations, flips and crops of one image, which training augmentation
draws anyway. The recipes therefore draw `copies_per_family` tiles of every training family per epoch (4)
instead of every tile. This trains the same network twice from scratch on the committed grouped split, once
each way, with the same number of training images (so the same optimizer steps, learning-rate schedule and
warm-up in steps) and the same augmentation, then scores every validation tile (all copies of all 128
validation families; no test tile) with each. What differs is only which tiles fill those steps: every
family equally often, or each family as often as it has copies (the folded families hold up to 207 tiles).

Each arm checkpoints every epoch under --runs-dir and resumes when the script is run again.

    python benchmarks/family_sampling.py [--arch mobilenetv2] [--input-size 128] [--every-copy-epochs 6]
                                         [--threads 2] [--runs-dir ~/.cache/lungfake/runs/family_sampling]
                                         [--seed 0] [--arms both|sampled|every]
"""
from __future__ import annotations

import argparse
import logging
import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
EVERY_COPY = 10**6  # copies_per_family larger than any family: every tile, every epoch


def arm_recipes(arch: str, input_size: int, every_copy_epochs: int, train_rows, seed: int = 0) -> dict:
    """The two recipes, matched in training images and warm-up steps: {arm name: Recipe}."""
    from lungfake.training import DEFAULT_RECIPES, family_sample

    base = replace(DEFAULT_RECIPES[arch].single_cycle(), input_size=input_size, seed=seed)
    per_epoch_sampled = len(family_sample(train_rows, base.copies_per_family, 0))
    per_epoch_all = len(train_rows)
    sampled_epochs = round(every_copy_epochs * per_epoch_all / per_epoch_sampled)
    return {
        f"{base.copies_per_family} copies per family": replace(base, epochs=sampled_epochs),
        "every copy": replace(base, epochs=every_copy_epochs, copies_per_family=EVERY_COPY,
                              warmup_epochs=base.warmup_epochs * per_epoch_sampled / per_epoch_all),
    }


def validation_accuracy(model, root, val_rows, size: int) -> np.ndarray:
    """Whether each validation tile (every copy) is classified right at size."""
    from lungfake.evaluation import predict_probabilities
    from lungfake.training import load_pixels

    pixels, truth = load_pixels(root, val_rows, size)
    return predict_probabilities(model, pixels).argmax(axis=1) == truth


def describe(name: str, recipe, images: int, history: dict, right: np.ndarray, families: np.ndarray) -> str:
    """One table row: the arm's training cost and its validation accuracy over every tile."""
    from lungfake.evaluation import with_intervals

    cpu = sum(history.get("cpu_seconds", [])) / 60
    wall = sum(history.get("epoch_seconds", [])) / 60
    accuracy = with_intervals(np.ones_like(right), right.astype(int), families)  # accuracy of "right" against all-true
    low, high = accuracy["ci95"]
    return (f"| {name} | {recipe.epochs} | {images:,} | {wall:.1f} / {cpu:.1f} | {np.median(history['images_per_second']):.1f} | "
            f"{history['val_accuracy'][-1]:.1%} | **{accuracy['value']:.1%}** ({low:.1%}-{high:.1%}) |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="mobilenetv2")
    parser.add_argument("--input-size", type=int, default=128)
    parser.add_argument("--every-copy-epochs", type=int, default=6, help="epochs of the every-copy arm; the other "
                        "arm gets as many epochs as make the same number of training images")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0, help="initialisation, family draws and augmentation of both arms")
    parser.add_argument("--arms", choices=("both", "sampled", "every"), default="both",
                        help="train and score one arm only (e.g. another seed of one arm, to see how much seeds move it)")
    parser.add_argument("--runs-dir", default=str(Path.home() / ".cache" / "lungfake" / "runs" / "family_sampling"))
    parser.add_argument("--data-dir")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    import tensorflow as tf

    from lungfake.data import resolve_data_root
    from lungfake.evaluation import with_intervals
    from lungfake.splits import load_split, rows_on
    from lungfake.store import WeightsStore
    from lungfake.training import family_sample, train

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    root = resolve_data_root(args.data_dir)
    rows = load_split(WeightsStore.resolve().split_csv("grouped"))
    val_rows = rows_on(rows, "val")
    families = np.array([r.family for r in val_rows])
    train_rows = rows_on(rows, "train")
    recipes = arm_recipes(args.arch, args.input_size, args.every_copy_epochs, train_rows, args.seed)
    wanted = {"both": (0, 1), "sampled": (0,), "every": (1,)}[args.arms]
    lines, right = [], {}
    for name, recipe in [item for i, item in enumerate(recipes.items()) if i in wanted]:
        seed = f"_seed{args.seed}" if args.seed else ""
        run_dir = Path(args.runs_dir) / f"{args.arch}_{args.input_size}_{name.replace(' ', '_')}{seed}"
        started = time.perf_counter()
        model, history, finished = train(root, rows, recipe, run_dir)
        logging.info("%s: %s after %.1f min in this process", name, "finished" if finished else "stopped", (time.perf_counter() - started) / 60)
        right[name] = validation_accuracy(model, root, val_rows, args.input_size)
        images = recipe.epochs * len(family_sample(train_rows, recipe.copies_per_family, 0))
        lines.append(describe(name, recipe, images, history, right[name], families))

    print(f"\n{args.arch} from scratch at {args.input_size} px, one cosine cycle, seed {args.seed}, the committed grouped split; "
          f"{len(val_rows)} validation tiles in {len(set(families))} families (95% intervals over families)\n")
    print("| arm | epochs | training images | wall / CPU minutes in epochs | median img/s | val acc. at last epoch (2 per family) | val accuracy, every tile |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(lines))
    if len(right) < 2:
        return
    (a, right_a), (b, right_b) = right.items()
    difference = with_intervals(right_a.astype(float), right_b.astype(float), families,
                                metric=lambda x, y: float(np.mean(x) - np.mean(y)))
    print(f"\n{a} minus {b}: {difference['value'] * 100:+.1f} points "
          f"(95% interval over families {difference['ci95'][0] * 100:+.1f} to {difference['ci95'][1] * 100:+.1f})")


if __name__ == "__main__":
    main()
