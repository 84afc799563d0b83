"""`python -m lungfake <command>`: split, audit, train, evaluate, ood-fit, predict."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from .errors import LungfakeError

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"


def _add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", help="LC25000 lung root (default: $LC25000_DIR)")


def cmd_split(args: argparse.Namespace) -> int:
    from .classes import CLASS_NAMES
    from .data import load_readable_tiles, resolve_data_root
    from .families import WORK_SIZE, dataset_families
    from .leakage import fold_leaks_into_train
    from .splits import PROTOCOLS, make_split, save_split

    root = resolve_data_root(args.data_dir)
    tiles, images = load_readable_tiles(root, WORK_SIZE)
    families, summary = dataset_families(tiles, images, list(CLASS_NAMES))
    print(json.dumps({"families": summary}, indent=2))
    for protocol in PROTOCOLS:
        target = Path(args.out_dir) / f"{protocol}.csv"
        rows = make_split(tiles, families, protocol, seed=args.seed)
        if protocol == "grouped":
            rows = fold_leaks_into_train(rows, root)
        save_split(rows, target)
        print(f"wrote {target}", file=sys.stderr)
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    from .data import resolve_data_root
    from .leakage import audit_split

    split_csv = Path(args.split)
    report = audit_split(split_csv, resolve_data_root(args.data_dir), args.threshold)
    print(json.dumps(report, indent=2))
    # Saved beside the split so the model card can quote it.
    split_csv.with_name(f"{split_csv.stem}_audit.json").write_text(json.dumps(report, indent=2) + "\n")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from .data import resolve_data_root
    from .splits import load_split
    from .training import DEFAULT_RECIPES, Recipe
    from .training import export_trained, run_dir_for

    base = DEFAULT_RECIPES[args.arch]
    overrides = {k: v for k, v in (("epochs", args.epochs), ("input_size", args.input_size), ("init", args.init)) if v is not None}
    recipe = Recipe(**{**base.__dict__, **overrides})
    split_csv = Path(args.split_csv or WEIGHTS_DIR / "splits" / f"{args.split}.csv")
    root = resolve_data_root(args.data_dir)
    from .training import train

    started = time.perf_counter()
    model, history, finished = train(root, load_split(split_csv), recipe, run_dir_for(args.arch, args.split), args.max_minutes)
    if not finished:
        print("stopped at the time budget; run the same command again to resume", file=sys.stderr)
        return 3
    export_trained(model, recipe, args.split, history, time.perf_counter() - started)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .data import resolve_data_root
    from .evaluation import evaluate_all

    evaluate_all(resolve_data_root(args.data_dir), args.arch, args.protocol)
    return 0


def cmd_ood_fit(args: argparse.Namespace) -> int:
    from .data import resolve_data_root
    from .ood_fitting import fit_and_register

    reference = fit_and_register(resolve_data_root(args.data_dir), args.feature_model, args.train_sample, args.quantile)
    print(json.dumps({"stain_limit": reference.stain.limit, "feature_limit": reference.features.limit}))
    return 0


def _print_result(file: str, outcome, as_json: bool) -> None:
    from .classes import display_name

    if isinstance(outcome, Exception):
        payload = {"file": file, "error": str(outcome)}
        print(json.dumps(payload) if as_json else f"{file}: error: {outcome}", flush=True)
        return
    if as_json:
        print(json.dumps({"file": file, **outcome.to_json()}), flush=True)
        return
    if outcome.ood.ood:
        print(f"{file}: WARNING: not like a lung H&E tile ({outcome.ood.reason}); the predictions mean nothing", flush=True)
    for arch, p in outcome.predictions.items():
        flag = " (low confidence)" if p.low_confidence else ""
        print(f"{file}: {arch}: {display_name(p.predicted)} {p.confidence:.1%}{flag}, cancer {p.cancer_probability:.1%}", flush=True)


def cmd_predict(args: argparse.Namespace) -> int:
    from .errors import ImageDecodeError
    from .images import read_image_file
    from .inference import LoadedModel, OodScreen, score_batch, select_entries

    models = [LoadedModel.load(entry) for entry in select_entries(args.model)]
    screen = OodScreen.load(models)
    failures = 0
    for start in range(0, len(args.files), args.batch_size):
        chunk = args.files[start : start + args.batch_size]
        decoded: dict[str, object] = {}
        for file in chunk:
            try:
                decoded[file] = read_image_file(file)
            except ImageDecodeError as exc:
                decoded[file] = exc
        readable = [f for f in chunk if not isinstance(decoded[f], Exception)]
        scored = dict(zip(readable, score_batch(models, screen, [decoded[f] for f in readable]))) if readable else {}
        for file in chunk:
            failures += file not in scored
            _print_result(file, scored.get(file, decoded[file]), args.json)
        if len(args.files) > args.batch_size:
            print(f"scored {min(start + args.batch_size, len(args.files))}/{len(args.files)} files", file=sys.stderr, flush=True)
    return 1 if failures else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lungfake", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    split = commands.add_parser("split", help="detect augmentation families and write both split CSVs")
    _add_data_dir(split)
    split.add_argument("--out-dir", default=str(WEIGHTS_DIR / "splits"))
    split.add_argument("--seed", type=int, default=0)
    split.set_defaults(run=cmd_split)

    audit = commands.add_parser("audit", help="count test tiles with a near-duplicate in train")
    _add_data_dir(audit)
    audit.add_argument("--split", required=True, help="a split CSV, e.g. weights/splits/grouped.csv")
    audit.add_argument("--threshold", type=float, default=None, help="match score that counts as a duplicate")
    audit.set_defaults(run=cmd_audit)

    from .models import ARCHITECTURES
    from .splits import PROTOCOLS

    train = commands.add_parser("train", help="train one architecture from scratch on a split (resumes if interrupted)")
    _add_data_dir(train)
    train.add_argument("--arch", choices=ARCHITECTURES, required=True)
    train.add_argument("--split", choices=PROTOCOLS, default="grouped")
    train.add_argument("--split-csv", help="a split CSV other than weights/splits/<split>.csv")
    train.add_argument("--epochs", type=int)
    train.add_argument("--input-size", type=int)
    train.add_argument("--init", choices=("scratch", "imagenet"), help="imagenet needs internet access")
    train.add_argument("--max-minutes", type=float, help="stop after the epoch that reaches this budget; rerun to resume")
    train.set_defaults(run=cmd_train)

    evaluate = commands.add_parser("evaluate", help="write weights/metrics/<arch>_<protocol>.json")
    _add_data_dir(evaluate)
    evaluate.add_argument("--arch", choices=(*ARCHITECTURES, "all"), default="all")
    evaluate.add_argument("--protocol", choices=(*PROTOCOLS, "all"), default="all")
    evaluate.set_defaults(run=cmd_evaluate)

    ood = commands.add_parser("ood-fit", help="fit the out-of-distribution check on grouped train tiles, limits from val")
    _add_data_dir(ood)
    ood.add_argument("--feature-model", default="mobilenetv2")
    ood.add_argument("--train-sample", type=int, default=3000, help="training tiles to fit on (stratified sample)")
    ood.add_argument("--quantile", type=float, default=0.995, help="share of validation tiles each check must pass")
    ood.set_defaults(run=cmd_ood_fit)

    predict = commands.add_parser("predict", help="score image files with the committed models")
    predict.add_argument("files", nargs="+", metavar="FILE")
    predict.add_argument("--model", default="all", help="resnet50, mobilenetv2 or all (any model in weights/registry.json)")
    predict.add_argument("--json", action="store_true", help="one JSON object per line per file")
    predict.add_argument("--batch-size", type=int, default=32)
    predict.set_defaults(run=cmd_predict)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except LungfakeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
