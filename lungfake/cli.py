"""`python -m lungfake <command>`: split, audit, train, evaluate, sprite, ood-fit, predict, region."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from lungfake.errors import LungfakeError


def _store(args: argparse.Namespace):
    """The weights store every command reads and writes: --weights-dir, else $LUNGFAKE_WEIGHTS_DIR, else weights/."""
    from lungfake.serving.store import WeightsStore

    return WeightsStore.resolve(getattr(args, "weights_dir", None))


def _add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", help="LC25000 lung root (default: $LC25000_DIR)")
    parser.add_argument("--weights-dir", help="the weights store (default: $LUNGFAKE_WEIGHTS_DIR, else weights/)")


def cmd_split(args: argparse.Namespace) -> int:
    from lungfake.classes import CLASS_NAMES
    from lungfake.data.families import WORK_SIZE, dataset_families, keypoints_of_all
    from lungfake.data.leakage import audit, audit_report, fold_leaks_into_train
    from lungfake.data.splits import PROTOCOLS, make_split, save_split
    from lungfake.data.tiles import load_readable_tiles, resolve_data_root

    store = _store(args)
    root = resolve_data_root(args.data_dir)
    started = time.perf_counter()
    tiles, images = load_readable_tiles(root, WORK_SIZE)
    keys = keypoints_of_all(images, lambda done, total: _progress("keypoints", done, total, started))
    del images
    families, summary = dataset_families(tiles, keys, CLASS_NAMES)
    summary["detection_seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps({"families": summary}, indent=2), flush=True)
    keys_by_path = {t.path: k for t, k in zip(tiles, keys)}
    for protocol in PROTOCOLS:
        rows = make_split(tiles, families, protocol, seed=args.seed)
        name = store.split_csv(protocol).name
        if protocol == "grouped":
            # The fold's first round is a full audit of val and test; its later rounds re-search whatever
            # was moved, so when it ends clean the split's audit is clean, with what was folded recorded.
            rows, folded, clean = fold_leaks_into_train(rows, keys_by_path)
            report = audit_report(rows, [], name) if clean else audit(rows, keys_by_path, name)[0]
            report["folded_into_train_before_committing"] = audit_report(rows, folded, name)["pairs"]
        else:
            report, _ = audit(rows, keys_by_path, name, sides=("test",))  # a random split leaks; the test side shows it
        save_split(rows, store.split_csv(protocol))
        report["families"] = summary
        _write_audit(store, protocol, report)
        print(f"wrote {store.split_csv(protocol)}: {_audit_line(report)}", file=sys.stderr, flush=True)
    return 0


def _progress(what: str, done: int, total: int, started: float) -> None:
    elapsed = time.perf_counter() - started
    eta = elapsed / done * (total - done) if done else 0.0
    print(f"{what} {done}/{total} ({elapsed:.0f} s, about {eta:.0f} s left)", file=sys.stderr, flush=True)


def _audit_line(report: dict) -> str:
    return "; ".join(f"{side}: {report[side]['with_copy_in_train']} of {report[side]['tiles']} tiles have a copy in train"
                     for side in ("test", "val") if side in report)


def _write_audit(store, protocol: str, report: dict) -> None:
    store.audit_json(protocol).write_text(json.dumps(report, indent=1) + "\n")


def cmd_audit(args: argparse.Namespace) -> int:
    from lungfake.data.leakage import audit, audit_report, keypoints_by_path, leaks_from_report, montage, rows_to_describe
    from lungfake.data.splits import load_split
    from lungfake.data.tiles import resolve_data_root

    split_csv = Path(args.split)
    root = resolve_data_root(args.data_dir)
    rows = load_split(split_csv)
    options = {"threshold": args.threshold} if args.threshold else {}
    if args.leaks_from:  # a saved full audit of this split stands for the first round
        leaks = leaks_from_report(rows, json.loads(Path(args.leaks_from).read_text()))
        keys = keypoints_by_path(root, rows_to_describe(rows, leaks))
        report = audit_report(rows, leaks, split_csv.name, **options)
    else:
        keys = keypoints_by_path(root, rows)
        report, leaks = audit(rows, keys, split_csv.name, **options)
    for leak in leaks:
        print(f"{leak.tile.side} {leak.tile.path} ~ train {leak.train_tile.path}: {leak.score}")
    print(_audit_line(report))
    if args.montage:
        montage(root, leaks, Path(args.montage))
        print(f"montage of the {min(12, len(leaks))} closest pairs: {args.montage}")
    if args.fold:
        report = _fold_and_save(args, rows, keys, leaks, split_csv, options)
    if args.save:
        saved = Path(args.save)
        # Re-auditing a committed split keeps what the split command recorded there (families, what it folded).
        earlier = json.loads(saved.read_text()) if saved.is_file() else {}
        report = {**{k: v for k, v in earlier.items() if k not in report}, **report}
        if args.fold:
            report["folded_into_train_before_committing"] = (earlier.get("folded_into_train_before_committing", [])
                                                             + report.pop("folded_now"))
        saved.write_text(json.dumps(report, indent=1) + "\n")
    return 0


def _fold_and_save(args, rows, keys, leaks, split_csv: Path, options: dict) -> dict:
    """Fold the leaks' families into train until the split is clean; keep the split as it was (models trained on
    it stay usable: see splits.only_folds) and write the folded one in its place. Returns the new audit report."""
    import shutil

    from lungfake.data.leakage import audit_report, fold_leaks_into_train
    from lungfake.data.splits import save_split, split_sha256
    from lungfake.errors import SplitError

    folded_rows, folded, clean = fold_leaks_into_train(rows, keys, first_leaks=leaks, **options)
    if not clean:
        raise SplitError("The split still leaks after the fold's last round; nothing was written. Rerun the audit with --fold.")
    if folded:
        earlier = _store(args).earlier_split_csv(split_csv.stem, split_sha256(split_csv))
        earlier.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(split_csv, earlier)
        save_split(folded_rows, split_csv)
        print(f"folded {len(folded)} leaks' families into train; {split_csv} rewritten, the split before kept as {earlier}")
    report = audit_report(folded_rows, [], split_csv.name, **options)
    report["folded_now"] = audit_report(folded_rows, folded, split_csv.name, **options)["pairs"]
    print(_audit_line(report))
    return report


def train_recipe(args: argparse.Namespace):
    """The architecture's default recipe with the command line's epochs, input size, init and --single-cycle."""
    from lungfake.training.trainer import DEFAULT_RECIPES, Recipe

    overrides = {k: v for k, v in (("epochs", args.epochs), ("train_size", args.input_size), ("init", args.init)) if v is not None}
    recipe = Recipe(**{**DEFAULT_RECIPES[args.arch].__dict__, **overrides})
    return recipe.single_cycle() if args.single_cycle else recipe


def cmd_train(args: argparse.Namespace) -> int:
    from lungfake.data.splits import load_split, split_sha256
    from lungfake.data.tiles import resolve_data_root
    from lungfake.training.trainer import export_trained, run_dir_for, served_starting_point

    recipe = train_recipe(args)
    split_csv = Path(args.split_csv or _store(args).split_csv(args.split))
    root = resolve_data_root(args.data_dir)
    split_sha = split_sha256(split_csv)
    start = served_starting_point(args.arch, args.split, recipe, split_csv, _store(args).root) if args.from_served else None
    from lungfake.training.trainer import train

    if args.threads:
        import tensorflow as tf

        # Two runs side by side on two cores: one thread pool each, instead of both oversubscribing the machine.
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    started = time.perf_counter()
    model, history, finished = train(root, load_split(split_csv), recipe, run_dir_for(args.arch, args.split), args.max_minutes,
                                     start)
    if not finished:
        print("stopped at the time budget; run the same command again to resume", file=sys.stderr)
        return 3
    export_trained(model, recipe, args.split, history, time.perf_counter() - started, folder=_store(args).root,
                   split_sha=split_sha, start=start)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from lungfake.data.tiles import resolve_data_root
    from lungfake.evaluation.evaluator import evaluate_all

    evaluate_all(resolve_data_root(args.data_dir), args.arch, args.protocol, _store(args), args.external_dir)
    return 0


def cmd_explanations(args: argparse.Namespace) -> int:
    from lungfake.data.tiles import resolve_data_root
    from lungfake.evaluation.explanation_check import check_models, describe
    from lungfake.explain.faithfulness import Faithfulness

    every = (args.val_every, args.test_every)
    for arch, result in check_models(resolve_data_root(args.data_dir), args.arch, _store(args).root, every=every).items():
        for label, chosen in (("overlay", result), ("precise overlay", result.get("precise"))):
            if chosen:
                print(f"{arch}: chose {chosen['method']} for its {label} on validation tiles")
                print(f"  validation: {describe(Faithfulness.from_json(chosen['validation']))}")
                print(f"  test:       {describe(Faithfulness.from_json(chosen['test']))}")
    return 0


def cmd_serve_size(args: argparse.Namespace) -> int:
    from lungfake.training.trainer import serve_at_input_size

    print(serve_at_input_size(args.arch, args.input_size, _store(args).root))
    print("now run: python -m lungfake evaluate (refits its temperature and warning threshold at this size)")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from lungfake.training.trainer import export_served

    print(export_served(args.arch, Path(args.keras), _store(args).root))
    print("now run: python -m lungfake evaluate (the metrics files record the served file's predictions)")
    return 0


def cmd_sprite(args: argparse.Namespace) -> int:
    from lungfake.data.tiles import resolve_data_root
    from lungfake.evaluation.evaluator import write_error_sprite

    print(write_error_sprite(resolve_data_root(args.data_dir), _store(args)))
    return 0


def cmd_ood_fit(args: argparse.Namespace) -> int:
    from lungfake.data.tiles import resolve_data_root
    from lungfake.evaluation.ood_fitting import fit_and_register

    reference = fit_and_register(resolve_data_root(args.data_dir), args.feature_model, args.train_sample, args.quantile,
                                 folder=_store(args).root)
    print(json.dumps({"tissue_limit": reference.tissue.limit, "stain_limit": reference.stain.limit,
                      "feature_limit": reference.features.limit}))
    return 0


def cmd_scale_fit(args: argparse.Namespace) -> int:
    from lungfake.data.tiles import resolve_data_root
    from lungfake.evaluation.scale_fitting import fit_and_register

    scale = fit_and_register(resolve_data_root(args.data_dir), _store(args).root, args.every, args.power,
                             (args.min_factor, args.max_factor))
    print(json.dumps(scale.to_json()))
    return 0


def _print_result(file: str, outcome, as_json: bool) -> None:
    from lungfake.classes import display_name
    from lungfake.reports.region import region_hint

    if isinstance(outcome, Exception):
        payload = {"file": file, "error": str(outcome)}
        print(json.dumps(payload) if as_json else f"{file}: error: {outcome}", flush=True)
        return
    if as_json:
        print(json.dumps(outcome.to_json()), flush=True)
        return
    hint = region_hint(outcome.rgb.shape, "`python -m lungfake region`")
    if outcome.refused:
        print(f"{file}: not scored: not like a lung H&E tile ({outcome.ood.reason}); no class is given", flush=True)
    else:
        verdict = outcome.verdict
        print(f"{file}: {verdict.headline}" + (f" ({verdict.explanation})" if verdict.subtype_uncertain else ""), flush=True)
    if outcome.ood.domain_shift:
        print(f"{file}: CAUTION: H&E tissue unlike LC25000's ({outcome.ood.domain_shift_reason}); trust the predictions less",
              flush=True)
    if hint:
        print(f"{file}: NOTE: {hint}", flush=True)
    if outcome.refused:
        return
    shown = {**outcome.models, **({"ensemble": outcome.ensemble} if outcome.ensemble else {})}
    for arch, p in shown.items():
        print(f"{file}: {arch}: {display_name(p.predicted)} {p.confidence:.1%}, cancer {p.cancer_probability:.1%}", flush=True)


def cmd_predict(args: argparse.Namespace) -> int:
    from lungfake.errors import ImageDecodeError
    from lungfake.scoring.scoring import Scorer
    from lungfake.serving.images import expand_folders, read_image_file

    files = expand_folders(args.files)
    scorer = Scorer.load(args.model, _store(args).root)
    failures = 0
    for start in range(0, len(files), args.batch_size):
        chunk = files[start : start + args.batch_size]
        decoded: dict[str, object] = {}
        for file in chunk:
            try:
                decoded[file] = read_image_file(file)
            except ImageDecodeError as exc:
                decoded[file] = exc
        readable = [f for f in chunk if not isinstance(decoded[f], Exception)]
        scored = dict(zip(readable, scorer.score([decoded[f] for f in readable], readable, tta=args.tta))) if readable else {}
        for file in chunk:
            failures += file not in scored
            _print_result(file, scored.get(file, decoded[file]), args.json)
        if len(files) > args.batch_size:
            print(f"scored {min(start + args.batch_size, len(files))}/{len(files)} files", file=sys.stderr, flush=True)
    return 1 if failures else 0


def cmd_region(args: argparse.Namespace) -> int:
    from lungfake.reports.region import RegionScale, decode_region, explain_tiles, png_bytes, region_report, score_region, thumbnail
    from lungfake.scoring.scoring import ENSEMBLE, Scorer

    scale = RegionScale(args.microns_per_pixel) if args.microns_per_pixel else RegionScale.from_magnification(args.magnification)
    scorer = Scorer.load("all", _store(args).root)
    rgb, working, pixel_factor = decode_region(Path(args.image).read_bytes(), args.image, scale)
    result = score_region(scorer, rgb, working, lambda p: print(f"{p.done}/{p.total} tiles", file=sys.stderr, flush=True),
                          pixel_factor)
    print(result.summary())
    print(f"refused as not H&E: {int(result.ood.sum())} tiles; cautioned as unlike LC25000: "
          f"{int(result.domain_shift.sum()) if result.domain_shift is not None else 0} tiles")
    which = ENSEMBLE if ENSEMBLE in result.model_names else next(iter(result.model_names))
    map_rgb = result.map_image(thumbnail(rgb), which, 0.5)
    if args.map:
        Path(args.map).write_bytes(png_bytes(map_rgb))
    if args.csv:
        Path(args.csv).write_text(result.csv_text())
    if args.report:
        suspicious = explain_tiles(scorer, rgb, result, result.most_suspicious(4))
        report = region_report(result, map_rgb, which, suspicious, Path(args.image).name, [s.entry for s in scorer.served])
        Path(args.report).write_text(report.html())
    return 0


def cmd_slide(args: argparse.Namespace) -> int:
    from lungfake.reports.slide import DEFAULT_MINUTES_LIMIT, map_slide, plan_slide, write_all
    from lungfake.scoring.scoring import Scorer
    from lungfake.serving.slides import SlideFile

    with SlideFile(args.slide) as slide:
        plan = plan_slide(slide, args.mpp)
        print(f"{plan.name}: {len(plan.grid):,} tissue tiles of {plan.tile} px (level {plan.level}), "
              f"{plan.scale.microns_per_pixel:g} um/px from {plan.scale.source}", file=sys.stderr)
        warning = plan.too_long_message(args.max_minutes or DEFAULT_MINUTES_LIMIT)
        if warning:
            print(f"note: {warning.split(' Map it')[0]} Going on.", file=sys.stderr)
        scorer = Scorer.load("all", _store(args).root)
        result = map_slide(scorer, slide, plan, _progress_printer("tiles"))
    print(result.summary_text())
    wanted = {"map": args.map, "csv": args.csv, "geojson": args.geojson, "report": args.report}
    outputs = result.outputs([s.entry for s in scorer.served], [kind for kind, path in wanted.items() if path])
    write_all({Path(wanted[kind]): data for kind, data in outputs.items()})
    return 0


def cmd_slides(args: argparse.Namespace) -> int:
    from lungfake.cohort.run import run_cohort, slides_in

    slides = slides_in(args.source)
    if not slides:
        print(f"error: no slide files in {args.source}", file=sys.stderr)
        return 2

    def show(progress) -> None:
        left = progress.seconds_left
        print(f"{progress.done}/{progress.total} slides, {progress.tiles_per_second:.1f} tiles per second"
              + (f", about {left / 60:.1f} min left" if left is not None else ""), file=sys.stderr, flush=True)

    rows = run_cohort(slides, Path(args.out), _store(args).root, args.scheduler, args.workers, args.mpp, show)
    failed = [row for row in rows if row["status"] == "failed"]
    print(f"{len(rows) - len(failed)} of {len(rows)} slides mapped; the cohort table is {Path(args.out) / 'cohort.csv'}")
    for row in failed:
        print(f"failed: {row['slide']}: {row['error']}", file=sys.stderr)
    return 1 if failed else 0


def _progress_printer(unit: str):
    """Done, left and the time left on standard error, after each batch."""
    def show(progress) -> None:
        left = progress.seconds_left
        print(f"{progress.done}/{progress.total} {unit}, {progress.total - progress.done} left"
              + (f", about {left:.0f} s to go" if left is not None else ""), file=sys.stderr, flush=True)
    return show


def build_parser() -> argparse.ArgumentParser:
    from lungfake.serving.scale import DEFAULT_FACTOR_RANGE, DEFAULT_POWER

    parser = argparse.ArgumentParser(prog="python -m lungfake", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    split = commands.add_parser("split", help="detect augmentation families and write both split CSVs")
    _add_data_dir(split)
    split.add_argument("--seed", type=int, default=0)
    split.set_defaults(run=cmd_split)

    audit = commands.add_parser("audit", help="find val/test tiles with a copy in train")
    _add_data_dir(audit)
    audit.add_argument("--split", required=True, help="a split CSV, e.g. weights/splits/grouped.csv")
    audit.add_argument("--threshold", type=int, default=None, help="consistent keypoints that make a copy (default: the detector's)")
    audit.add_argument("--montage", help="write a PNG of the closest pairs here")
    audit.add_argument("--save", help="write the audit report (JSON) here")
    audit.add_argument("--fold", action="store_true", help="fold every leaking val/test family into train until none is left, "
                       "rewrite the split and keep the one before under weights/splits/earlier/")
    audit.add_argument("--leaks-from", help="a saved full audit of this split (--save) to fold from instead of auditing again")
    audit.set_defaults(run=cmd_audit)

    from lungfake.data.splits import PROTOCOLS
    from lungfake.evaluation.explanation_check import TEST_EVERY, VAL_EVERY
    from lungfake.evaluation.external import DEFAULT_EXTERNAL_DIR
    from lungfake.training.architectures import ARCHITECTURES

    train = commands.add_parser("train", help="train one architecture from scratch on a split (resumes if interrupted)")
    _add_data_dir(train)
    train.add_argument("--arch", choices=ARCHITECTURES, required=True)
    train.add_argument("--split", choices=PROTOCOLS, default="grouped")
    train.add_argument("--split-csv", help="a split CSV other than weights/splits/<split>.csv")
    train.add_argument("--epochs", type=int)
    train.add_argument("--input-size", type=int,
                       help="the size the network trains at (its first cycle); serve-size sets the size it is served at")
    train.add_argument("--init", choices=("scratch", "imagenet"), help="imagenet needs internet access")
    train.add_argument("--max-minutes", type=float, help="stop after the epoch that reaches this budget; rerun to resume")
    train.add_argument("--from-served", action="store_true",
                       help="with no checkpoint yet, continue the served model from its last epoch (a restart of the recipe)")
    train.add_argument("--threads", type=int, help="TensorFlow threads (e.g. 1 each when two runs share two cores)")
    train.add_argument("--single-cycle", action="store_true",
                       help="drop the recipe's warm restarts: one cosine cycle over all --epochs at --input-size")
    train.set_defaults(run=cmd_train)

    evaluate = commands.add_parser("evaluate", help="write weights/metrics/<arch>_<protocol>.json")
    _add_data_dir(evaluate)
    evaluate.add_argument("--arch", choices=(*ARCHITECTURES, "models", "baselines", "all"), default="all",
                          help="one model, every served model (with their ensemble), the baselines only, or all")
    evaluate.add_argument("--external", "--external-dir", dest="external_dir", default=str(DEFAULT_EXTERNAL_DIR),
                          help="other labs' labelled images (a folder with manifest.csv: path,label): scored for the 'other "
                          "labs' figures, and the robustness table restains to their colours; measuring only, never tuning")
    evaluate.add_argument("--protocol", choices=(*PROTOCOLS, "all"), default="all")
    evaluate.set_defaults(run=cmd_evaluate)

    explanations = commands.add_parser("explanations", help="measure every overlay method on validation tiles, record "
                                       "the most faithful per model, and its figures on grouped test tiles in the metrics")
    _add_data_dir(explanations)
    explanations.add_argument("--arch", default="all", help="one architecture, several separated by commas, or all")
    explanations.add_argument("--val-every", type=int, default=VAL_EVERY, help="every n-th grouped validation tile")
    explanations.add_argument("--test-every", type=int, default=TEST_EVERY, help="every n-th grouped test tile")
    explanations.set_defaults(run=cmd_explanations)

    serve_size = commands.add_parser("serve-size", help="serve a model's weights at another input size (chosen on val "
                                     "tiles; see docs/decisions.md)")
    serve_size.add_argument("--arch", choices=ARCHITECTURES, required=True)
    serve_size.add_argument("--input-size", type=int, required=True)
    serve_size.add_argument("--weights-dir", help="the weights store (default: $LUNGFAKE_WEIGHTS_DIR, else weights/)")
    serve_size.set_defaults(run=cmd_serve_size)

    export = commands.add_parser("export", help="write a registered model's served file (float16 LiteRT) from its trained "
                                 "Keras model, e.g. one restored from the repository's history")
    export.add_argument("--arch", required=True, help="a model in the registry")
    export.add_argument("--keras", required=True, help="the trained Keras model file (.keras)")
    export.add_argument("--weights-dir", help="the weights store (default: $LUNGFAKE_WEIGHTS_DIR, else weights/)")
    export.set_defaults(run=cmd_export)

    sprite = commands.add_parser("sprite", help="rebuild the committed sprite of misclassified test tiles (evaluate does this too)")
    _add_data_dir(sprite)
    sprite.set_defaults(run=cmd_sprite)

    ood = commands.add_parser("ood-fit", help="fit the out-of-distribution check on grouped train tiles, limits from val")
    _add_data_dir(ood)
    ood.add_argument("--feature-model", default="mobilenetv2")
    ood.add_argument("--train-sample", type=int, default=3000, help="training tiles to fit on (stratified sample)")
    ood.add_argument("--quantile", type=float, default=0.995, help="share of validation tiles each check must pass")
    ood.set_defaults(run=cmd_ood_fit)

    scale_fit = commands.add_parser("scale-fit", help="measure LC25000's nuclear size on grouped train tiles: every scoring "
                                "then brings each tile part of the way to it (scale.py)")
    _add_data_dir(scale_fit)
    scale_fit.add_argument("--every", type=int, default=20, help="measure every N-th training tile")
    scale_fit.add_argument("--power", type=float, default=DEFAULT_POWER,
                       help="how far to bring a tile: 0 not at all, 1 all the way, 0.5 half-way in log scale (chosen on val)")
    scale_fit.add_argument("--min-factor", type=float, default=DEFAULT_FACTOR_RANGE[0], help="the most a tile is shrunk")
    scale_fit.add_argument("--max-factor", type=float, default=DEFAULT_FACTOR_RANGE[1],
                           help="the most a tile is enlarged (1: never, as chosen on val)")
    scale_fit.set_defaults(run=cmd_scale_fit)

    predict = commands.add_parser("predict", help="score image files with the committed models")
    predict.add_argument("files", nargs="+", metavar="FILE", help="image files, or folders: every image file under them")
    predict.add_argument("--model", default="all", help="an architecture in weights/registry.json, several separated by commas, or all")
    predict.add_argument("--json", action="store_true", help="one JSON object per line per file")
    predict.add_argument("--batch-size", type=int, default=32)
    predict.add_argument("--tta", action="store_true", help="average each model over the tile's 8 rotations and mirror images")
    predict.add_argument("--weights-dir", help="the weights store (default: $LUNGFAKE_WEIGHTS_DIR, else weights/)")
    predict.set_defaults(run=cmd_predict)

    region = commands.add_parser("region", help="map a large H&E image: its tissue tiles scored by every model")
    region.add_argument("image")
    scale = region.add_mutually_exclusive_group()
    scale.add_argument("--magnification", type=float, default=40.0, help="objective (scanner convention: 40x = 0.25 um/px)")
    scale.add_argument("--microns-per-pixel", type=float)
    region.add_argument("--map", help="write the ensemble's class map over the image here (PNG)")
    region.add_argument("--csv", help="write one row per tissue tile here")
    region.add_argument("--report", help="write a case report here (HTML)")
    region.add_argument("--weights-dir", help="the weights store (default: $LUNGFAKE_WEIGHTS_DIR, else weights/)")
    region.set_defaults(run=cmd_region)

    slide = commands.add_parser("slide", help="map a whole slide (SVS, NDPI, MRXS, SCN, DICOM, tiled TIFF) tile by tile")
    slide.add_argument("slide")
    slide.add_argument("--mpp", type=float, help="microns per pixel at level 0, where the file does not record it")
    slide.add_argument("--map", help="write each tissue tile in its verdict's colour over a thumbnail here (PNG)")
    slide.add_argument("--csv", help="write one row per tissue tile here (level-0 pixels)")
    slide.add_argument("--geojson", help="write the tiles for QuPath here (GeoJSON, level-0 pixels)")
    slide.add_argument("--report", help="write a slide report here (HTML)")
    slide.add_argument("--max-minutes", type=float, help="the estimate above which a note is printed (the run goes on)")
    slide.add_argument("--weights-dir", help="the weights store (default: $LUNGFAKE_WEIGHTS_DIR, else weights/)")
    slide.set_defaults(run=cmd_slide)

    cohort = commands.add_parser("slides", help="map a cohort of slides on Dask distributed (a LocalCluster or --scheduler)")
    cohort.add_argument("source", help="a folder of slides, or a text file with one slide path a line")
    cohort.add_argument("--out", required=True, help="the folder for every slide's outputs and the cohort table")
    cohort.add_argument("--scheduler", help="a Dask scheduler's address (tcp://host:8786); default: a LocalCluster here")
    cohort.add_argument("--workers", type=int, default=2, help="LocalCluster worker processes (default 2)")
    cohort.add_argument("--mpp", type=float, help="microns per pixel for every slide, as lungfake slide --mpp")
    cohort.add_argument("--weights-dir", help="the weights store (default: $LUNGFAKE_WEIGHTS_DIR, else weights/)")
    cohort.set_defaults(run=cmd_slides)
    return parser


def main(argv: list[str] | None = None) -> int:
    import logging

    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except LungfakeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a file or folder given on the command line that cannot be read or written
        print(f"error: {exc.strerror or exc}: {exc.filename or ''}; check the path and its permissions.", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; a training run resumes from its last checkpoint when started again", file=sys.stderr)
        return 130
