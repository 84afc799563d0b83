"""Training from scratch on a split: tf.data pipeline, histology augmentation, checkpoint/resume.

Each epoch draws a few copies of every training family rather than all ~20: the copies are
rotations and flips of one image, which augmentation provides anyway. At the same number of
training images this scores the same on validation as every copy (docs/decisions.md);
what it buys is short epochs (a checkpoint and a validation reading about every minute, so an
interrupted run loses little) and families that weigh the same whatever their size.
"""
from __future__ import annotations

import copy
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from lungfake.classes import CLASS_NAMES, class_index
from lungfake.data.splits import SplitRow, folds_saved_split, load_split, rows_on, split_sha256
from lungfake.data.tiles import read_split_pixels
from lungfake.errors import TrainingError
from lungfake.training.augment import Augmentation, augment_tile

log = logging.getLogger(__name__)
# Recipe fields as histories and the registry recorded them before they were renamed: "input_size" meant the
# training size here and the serving size in the registry.
RENAMED = {"input_size": "train_size", "restart_input_sizes": "restart_train_sizes"}
SOURCE_SIZE = 224  # tiles are kept at LC25000's size so augmentation can change the magnification


@dataclass(frozen=True)
class Recipe:
    arch: str
    train_size: int  # pixels a side the network trains at (the registry's input_size is the size it is served at)
    epochs: int
    batch_size: int = 32
    learning_rate: float = 2e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.05
    dropout: float = 0.2
    max_rotation_degrees: float = 180.0  # any angle: a slide has no up
    copies_per_family: int = 4
    val_tiles_per_family: int = 2
    augmentation: Augmentation = field(default_factory=Augmentation)
    init: str = "scratch"
    seed: int = 0
    # Warm restarts (SGDR): at each of these epochs a fresh optimizer climbs again to restart_learning_rate
    # (over restart_warmup_epochs) and decays by cosine to the next restart or the end. A restart is also where
    # a run may continue from a model saved at that epoch without its optimizer state (`train --from-served`).
    restart_epochs: tuple[int, ...] = ()
    restart_learning_rate: float = 1e-3
    restart_warmup_epochs: float = 1.0
    # The training size of the cycle that each restart starts (aligned with restart_epochs; empty: train_size
    # throughout). A last cycle at a larger size fine-tunes a network trained small at the size it will serve
    # (the "FixRes" effect, Touvron et al. 2019): most epochs stay cheap, the served model sees the tile's detail.
    restart_train_sizes: tuple[int, ...] = ()
    # The peak learning rate of the cycle that each restart starts (aligned with restart_epochs; empty:
    # restart_learning_rate at every restart). A late cycle that only fine-tunes a converged network climbs
    # lower: a climb back to 1e-3 undoes more than a short cycle on one core can rebuild.
    restart_learning_rates: tuple[float, ...] = ()

    @staticmethod
    def from_json(payload: dict) -> Recipe:
        payload = {RENAMED.get(k, k): v for k, v in payload.items()}  # recipes recorded before the rename
        augmentation = Augmentation(**{k: tuple(v) if isinstance(v, list) else v for k, v in payload.get("augmentation", {}).items()})
        known = {k: tuple(v) if isinstance(v, list) else v
                 for k, v in payload.items() if k in Recipe.__dataclass_fields__ and k != "augmentation"}
        return Recipe(**known, augmentation=augmentation)

    def segment(self, epoch: int) -> tuple[int, int]:
        """The (first, end) epochs of the learning-rate cycle that holds epoch."""
        bounds = [0, *sorted(self.restart_epochs), self.epochs]
        return next((a, b) for a, b in zip(bounds, bounds[1:]) if a <= epoch < b)

    def _of_cycle(self, epoch: int, per_restart: tuple, at_restart, at_start, what: str):
        """A setting of the cycle holding epoch: at_start in the first cycle; in a later one its entry of per_restart
        (aligned with restart_epochs), else at_restart."""
        if len(per_restart) not in (0, len(self.restart_epochs)):
            raise TrainingError(f"{what} needs one value per restart epoch.")
        first, _ = self.segment(epoch)
        return at_start if first == 0 else dict(zip(sorted(self.restart_epochs), per_restart)).get(first, at_restart)

    def train_size_at(self, epoch: int) -> int:
        """The input size the network is trained at in epoch (that of the cycle holding it)."""
        return self._of_cycle(epoch, self.restart_train_sizes, self.train_size, self.train_size, "restart_train_sizes")

    def peak_learning_rate_at(self, epoch: int) -> float:
        """The peak learning rate of the cycle holding epoch."""
        return self._of_cycle(epoch, self.restart_learning_rates, self.restart_learning_rate, self.learning_rate,
                              "restart_learning_rates")

    def single_cycle(self) -> Recipe:
        """This recipe with its warm restarts dropped: one cosine cycle over all epochs at train_size."""
        return replace(self, restart_epochs=(), restart_train_sizes=(), restart_learning_rates=())

    @property
    def last_train_size(self) -> int:
        """The input size of the last cycle: the size export registers (serve-size may serve it at another)."""
        return self.train_size_at(self.epochs - 1)

    def same_schedule_until(self, other: Recipe, epoch: int) -> bool:
        """Whether this recipe trains its first `epoch` epochs exactly as other does (other may end there)."""
        # Per-cycle settings are compared below as each earlier cycle used them (the shared restart rate included).
        ignore = {"epochs", "restart_epochs", "restart_train_sizes", "restart_learning_rates", "restart_learning_rate"}
        if not any(r < epoch for r in (*self.restart_epochs, *other.restart_epochs)):
            ignore |= {"restart_warmup_epochs"}  # no restart yet: it played no part
        same = all(getattr(self, k) == getattr(other, k) for k in Recipe.__dataclass_fields__ if k not in ignore)
        earlier_restarts = [r for r in self.restart_epochs if r < epoch]
        return (same and earlier_restarts == [r for r in other.restart_epochs if r < epoch]
                and all(self.train_size_at(r) == other.train_size_at(r) for r in earlier_restarts)
                and all(self.peak_learning_rate_at(r) == other.peak_learning_rate_at(r) for r in earlier_restarts))


# The committed models' recipes (see weights/history/). Each cycle of a recipe fits a 2.5-hour session: the
# restarted one (MobileNetV2) on one core of two, the single cycles (ResNet50, DenseNet121) only alone on both
# (--threads 2). A run interrupted
# anywhere resumes from its checkpoint, and one that reached a restart with only the served model left (a fresh
# machine) continues from it with `train --from-served`.
DEFAULT_RECIPES = {
    "mobilenetv2": Recipe("mobilenetv2", train_size=128, epochs=82, restart_epochs=(24, 64), restart_train_sizes=(128, 224)),
    "resnet50": Recipe("resnet50", train_size=112, epochs=52),
    "densenet121": Recipe("densenet121", train_size=112, epochs=40),
}


def load_pixels(root: Path, rows: list[SplitRow], size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixels (n, size, size, 3 uint8) and class indices of split rows, in row order."""
    return read_split_pixels(root, rows, size), np.asarray([class_index(r.label) for r in rows], np.int32)


def family_sample(rows: list[SplitRow], per_family: int, seed: int) -> np.ndarray:
    """Indices of per_family tiles of every family (all of a smaller family), shuffled."""
    rng = np.random.default_rng(seed)
    by_family: dict[str, list[int]] = {}
    for i, row in enumerate(rows):
        by_family.setdefault(row.family, []).append(i)
    chosen = [rng.choice(members, min(per_family, len(members)), replace=False) for members in by_family.values()]
    picked = np.concatenate(chosen) if chosen else np.zeros(0, int)
    rng.shuffle(picked)
    return picked


def make_dataset(images: np.ndarray, labels: np.ndarray, recipe: Recipe, training: bool, size: int | None = None):
    """Batches of (pixels 0-255 float32 at size, by default the recipe's first input size, one-hot labels);
    augmented when training."""
    import keras
    import tensorflow as tf

    n_classes, size = len(CLASS_NAMES), size or recipe.train_size
    ds = tf.data.Dataset.from_tensor_slices((images, labels))
    if training:
        ds = ds.map(lambda x, y: (augment_tile(x, size, recipe.augmentation), y), num_parallel_calls=tf.data.AUTOTUNE)
    else:
        ds = ds.map(lambda x, y: (tf.image.resize(tf.cast(x, tf.float32), (size, size), antialias=True), y))
    ds = ds.batch(recipe.batch_size)
    if training and recipe.max_rotation_degrees:
        rotate = keras.layers.RandomRotation(recipe.max_rotation_degrees / 360.0, fill_mode="reflect", seed=recipe.seed)
        ds = ds.map(lambda x, y: (rotate(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.map(lambda x, y: (x, tf.one_hot(y, n_classes)))
    return ds.prefetch(tf.data.AUTOTUNE)


def learning_rate_schedule(recipe: Recipe, steps_per_epoch: int, epoch: int = 0):
    """Warm-up then cosine decay over the cycle that starts at epoch (0 or a restart)."""
    import keras

    first, end = recipe.segment(epoch)
    peak = recipe.peak_learning_rate_at(epoch)
    warmup_epochs = recipe.warmup_epochs if first == 0 else recipe.restart_warmup_epochs
    total = max(1, (end - first) * steps_per_epoch)
    warmup = int(warmup_epochs * steps_per_epoch)
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup else peak,
        decay_steps=max(1, total - warmup),
        warmup_target=peak if warmup else None,
        warmup_steps=warmup,
    )


def compile_for_training(model, recipe: Recipe, steps_per_epoch: int, epoch: int = 0) -> None:
    """A fresh optimizer for the learning-rate cycle that starts at epoch."""
    import keras

    schedule = learning_rate_schedule(recipe, steps_per_epoch, epoch)
    model.compile(
        optimizer=keras.optimizers.AdamW(learning_rate=schedule, weight_decay=recipe.weight_decay),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=recipe.label_smoothing),
        metrics=["accuracy"],
        # XLA gave no speed-up on the 2-core CPU here (measured 16 img/s either way): keep plain oneDNN kernels.
        jit_compile=False,
    )


def at_input_size(model, recipe: Recipe, size: int):
    """model itself if it takes size x size tiles, else the same weights in a network built at size (every
    served architecture is convolutional up to a global pooling, so its weights do not depend on the size)."""
    from lungfake.training.architectures import build_model

    if model.input_shape[1] == size:
        return model
    log.info("rebuilding %s at %d px (was %s px)", recipe.arch, size, model.input_shape[1])
    resized = build_model(recipe.arch, size, init="scratch", dropout=recipe.dropout)
    resized.set_weights(model.get_weights())
    return resized


def seconds_left(steps_left: int, epochs_after: int, steps_per_epoch: int, step_seconds: float, whole_epochs: list[float]) -> float:
    """Seconds until a run ends: the steps left in this epoch at the current pace, then each later epoch at the
    median wall time of the whole epochs done in this process, validation and checkpoint included (training
    steps alone leave out about a quarter of an epoch's wall time here); before one is done, at the steps' pace."""
    steps_only = steps_per_epoch * step_seconds
    per_epoch = float(np.median(whole_epochs)) if whole_epochs else steps_only
    return steps_left * step_seconds + max(per_epoch - steps_only, 0.0) + epochs_after * per_epoch


class _ProgressLog:
    """A keras callback (built lazily so keras loads only when training) that logs and checkpoints."""

    @staticmethod
    def create(run_dir: Path, steps_per_epoch: int, total_epochs: int, batch_size: int, history: dict, log_every: int = 20):
        import keras

        class ProgressLog(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                # Wall seconds from one epoch's start to the next's in this process: validation, checkpoint and
                # the refill of the shuffled, augmented input included.
                self.whole_epochs, self.started = [], None

            def on_epoch_begin(self, epoch, logs=None):
                now = time.perf_counter()
                if self.started is not None:
                    self.whole_epochs.append(now - self.started)
                self.epoch, self.started, self.cpu_started = epoch, now, time.process_time()

            def on_train_batch_end(self, batch, logs=None):
                if (batch + 1) % log_every and batch + 1 != steps_per_epoch:
                    return
                elapsed = time.perf_counter() - self.started
                rate = (batch + 1) * batch_size / elapsed
                left = seconds_left(steps_per_epoch - batch - 1, total_epochs - self.epoch - 1, steps_per_epoch,
                                    batch_size / rate, self.whole_epochs)
                log.info("epoch %d/%d step %d/%d loss %.4f acc %.4f %.1f img/s, about %.1f min left in the run",
                         self.epoch + 1, total_epochs, batch + 1, steps_per_epoch, logs["loss"], logs["accuracy"], rate, left / 60)

            def on_epoch_end(self, epoch, logs=None):
                for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
                    history.setdefault(key, []).append(float(logs[key]))
                seconds = time.perf_counter() - self.started
                history.setdefault("epoch_seconds", []).append(round(seconds, 1))
                history.setdefault("images_per_second", []).append(round(steps_per_epoch * batch_size / seconds, 1))
                # CPU seconds of every thread of the process (wall seconds times the cores it kept busy).
                history.setdefault("cpu_seconds", []).append(round(time.process_time() - self.cpu_started, 1))
                self.model.save(run_dir / "checkpoint.keras")
                _write_json(run_dir / "state.json", {"epochs_done": epoch + 1, "history": history})
                log.info("epoch %d done: %s", epoch + 1, json.dumps({k: v[-1] for k, v in history.items()}))

        return ProgressLog()


def _write_json(path: Path, payload: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=2))
    os.replace(tmp, path)


@dataclass(frozen=True)
class StartingPoint:
    """A saved model (no optimizer state) and the history that made it: a run continues from it at a restart."""
    model_path: Path
    history: dict
    epochs_done: int
    split_sha256: str  # the split its epochs were trained on: the committed one, or one that it only folds
    first_epochs: dict | None = None  # its own record of earlier epochs on another split, carried into the next


def served_starting_point(arch: str, protocol: str, recipe: Recipe, split_csv: Path, folder: Path | None = None) -> StartingPoint:
    """The served model of arch, checked (sha256, split, recipe so far) as the first epochs of recipe. A model
    trained on the split before leaking val/test families were folded into train may continue on the committed
    split: its train tiles are a subset of the committed train tiles, so no held-out tile is ever trained on."""
    from lungfake.serving.registry import load_registry
    from lungfake.serving.store import WeightsStore

    store = WeightsStore.resolve(folder)
    entry = load_registry(store.root).get(arch)
    history_file = store.history_json(arch, protocol)
    if entry is None or entry.split != protocol or not history_file.is_file():
        raise TrainingError(f"There is no served {arch} model trained on the {protocol} split with its history to continue "
                            "from; train from scratch (without --from-served).")
    record = json.loads(history_file.read_text())
    done = len(record["history"].get("loss", []))
    earlier = Recipe.from_json(record["recipe"])
    trained_on = record.get("split_sha256") or ""
    kept = store.earlier_split_csv(protocol, trained_on)
    if trained_on != split_sha256(split_csv) and not folds_saved_split(kept, load_split(split_csv)):
        raise TrainingError(f"The served {arch} model was trained on another split than the committed one (nor one that it "
                            "only folds); train from scratch.")
    if done not in recipe.restart_epochs or not recipe.same_schedule_until(earlier, done) or earlier.epochs != done:
        raise TrainingError(f"The served {arch} model ({done} epochs) is not the first part of this recipe (restarts at "
                            f"{list(recipe.restart_epochs)}, same settings before them); train from scratch.")
    return StartingPoint(verified_trained_model(arch, protocol, store.root), record["history"], done, trained_on,
                         record.get("first_epochs"))


def _resume_or_build(run_dir: Path, recipe: Recipe, steps_per_epoch: int, start: StartingPoint | None = None):
    import keras

    from lungfake.training.architectures import build_model, register_custom_layers

    register_custom_layers()
    state_path, checkpoint = run_dir / "state.json", run_dir / "checkpoint.keras"
    if state_path.exists() and checkpoint.exists():
        state = json.loads(state_path.read_text())
        log.info("resuming %s after epoch %d", run_dir, state["epochs_done"])
        return keras.models.load_model(checkpoint), state["epochs_done"], state["history"]
    if start is not None:
        log.info("continuing from %s after epoch %d (a warm restart: fresh optimizer)", start.model_path, start.epochs_done)
        model = keras.models.load_model(start.model_path, compile=False, safe_mode=True)
        return model, start.epochs_done, copy.deepcopy(start.history)  # the run appends to its own history
    model = build_model(recipe.arch, recipe.train_size, init=recipe.init, dropout=recipe.dropout)
    compile_for_training(model, recipe, steps_per_epoch)
    return model, 0, {}


def _recipe_json(recipe: Recipe) -> dict:
    return asdict(recipe)


def check_resumable(run_dir: Path, recipe: Recipe) -> None:
    """Refuse to resume a checkpoint under another recipe than the one it was trained with: its learning-rate
    schedule, augmentation or input size would change mid-run without a word. A finished run may be extended
    (more epochs, the same schedule so far)."""
    state_path, saved_path = run_dir / "state.json", run_dir / "recipe.json"
    if not (state_path.exists() and (run_dir / "checkpoint.keras").exists()):
        return
    if not saved_path.exists():
        log.warning("%s has a checkpoint but no recipe.json; resuming without checking its recipe", run_dir)
        return
    saved = Recipe.from_json(json.loads(saved_path.read_text()))
    done = json.loads(state_path.read_text())["epochs_done"]
    if saved == recipe:
        return
    if done >= saved.epochs and recipe.epochs >= done and recipe.same_schedule_until(saved, done):
        log.info("extending the finished run in %s from %d to %d epochs", run_dir, done, recipe.epochs)
        return
    changed = ", ".join(f"{k}={getattr(saved, k)!r} (now {getattr(recipe, k)!r})"
                        for k in Recipe.__dataclass_fields__ if getattr(saved, k) != getattr(recipe, k))
    raise TrainingError(f"{run_dir} holds a run of {done} of {saved.epochs} epochs trained with another recipe: {changed}. "
                        "Resume it with the same settings (for example --epochs), or move that folder away to start over.")


def train(root: Path, rows: list[SplitRow], recipe: Recipe, run_dir: Path, max_minutes: float | None = None,
          start: StartingPoint | None = None):
    """Train (or resume) in run_dir; returns (model, history, finished). With max_minutes, stops after
    the epoch during which the budget ran out (the checkpoint allows a resume). With start, a run that has
    no checkpoint yet continues from that saved model at its restart epoch."""
    import keras

    check_resumable(run_dir, recipe)  # before recipe.json is rewritten with this recipe
    run_dir.mkdir(parents=True, exist_ok=True)
    _write_json(run_dir / "recipe.json", _recipe_json(recipe))
    keras.utils.set_random_seed(recipe.seed)
    train_rows, val_rows = rows_on(rows, "train"), rows_on(rows, "val")
    train_x, train_y = load_pixels(root, train_rows, SOURCE_SIZE)
    val_pick = family_sample(val_rows, recipe.val_tiles_per_family, recipe.seed)
    val_x, val_y = load_pixels(root, [val_rows[i] for i in val_pick], SOURCE_SIZE)  # resized to each cycle's size
    per_epoch = len(family_sample(train_rows, recipe.copies_per_family, 0))
    steps = int(np.ceil(per_epoch / recipe.batch_size))
    model, done, history = _resume_or_build(run_dir, recipe, steps, start)
    progress = _ProgressLog.create(run_dir, steps, recipe.epochs, recipe.batch_size, history)
    started = time.perf_counter()
    log.info("training %s: %d train tiles in %d families (%d a epoch), %d val tiles; epochs %d-%d",
             recipe.arch, len(train_x), len({r.family for r in train_rows}), per_epoch, len(val_x), done + 1, recipe.epochs)
    for epoch in range(done, recipe.epochs):
        size = recipe.train_size_at(epoch)
        if epoch in recipe.restart_epochs:
            model = at_input_size(model, recipe, size)
            compile_for_training(model, recipe, steps, epoch)
        val_ds = make_dataset(val_x, val_y, recipe, training=False, size=size)
        pick = family_sample(train_rows, recipe.copies_per_family, recipe.seed * 1000 + epoch)
        epoch_ds = make_dataset(train_x[pick], train_y[pick], recipe, training=True, size=size)
        model.fit(epoch_ds, validation_data=val_ds, initial_epoch=epoch, epochs=epoch + 1, verbose=0, callbacks=[progress])
        if max_minutes is not None and time.perf_counter() - started >= max_minutes * 60 and epoch + 1 < recipe.epochs:
            log.info("time budget of %s min reached after epoch %d; run the same command again to resume", max_minutes, epoch + 1)
            break
    return model, history, len(history.get("loss", [])) >= recipe.epochs


def inference_copy(model):
    """The same network and weights without optimizer state or training config."""
    import keras

    # clone_model keeps the compiled optimizer, whose state would triple the file size.
    copy = keras.Model.from_config(model.get_config())
    copy.set_weights(model.get_weights())
    return copy


RUNS_DIR_ENV = "LUNGFAKE_RUNS_DIR"


def runs_dir() -> Path:
    """Checkpoints live outside the work tree by default, so a fresh checkout on the same machine can resume."""
    return Path(os.environ.get(RUNS_DIR_ENV) or Path.home() / ".cache" / "lungfake" / "runs")


def run_dir_for(arch: str, protocol: str) -> Path:
    return runs_dir() / f"{arch}_{protocol}"


def history_path(arch: str, protocol: str, folder: Path | None = None) -> Path:
    from lungfake.serving.store import WeightsStore

    return WeightsStore.resolve(folder).history_json(arch, protocol)


def trained_model_path(arch: str, protocol: str) -> Path:
    """The trained Keras model (no optimizer state), kept where it was trained and never committed: a warm restart
    or a change of input size starts from it, since a served file (model_file.py) cannot be trained further."""
    return run_dir_for(arch, protocol) / "model.keras"


def unregistered_served_path(arch: str, protocol: str) -> Path:
    """The served file of a model of a non-served protocol (random): evaluated locally, never committed."""
    return run_dir_for(arch, protocol) / "model.tflite"


def verified_trained_model(arch: str, protocol: str, folder: Path | None = None) -> Path:
    """The Keras model that arch's served file was exported from, checked against the sha256 in its training history."""
    from lungfake.serving.registry import sha256_of
    from lungfake.serving.store import WeightsStore

    history_file = WeightsStore.resolve(folder).history_json(arch, protocol)
    expected = json.loads(history_file.read_text()).get("keras_sha256") if history_file.is_file() else None
    path = trained_model_path(arch, protocol)
    if expected is None or not path.is_file() or sha256_of(path) != expected:
        found = "is missing" if not path.is_file() else "is not the one the served file was exported from"
        raise TrainingError(f"The trained Keras model of {arch} ({path}) {found}: it stays where the model was trained, "
                            "and the repository keeps only the served file. docs/models.md#trained-keras-models says "
                            "where the committed models' Keras files are; otherwise train from scratch.")
    return path


def train_cpu_minutes(history: dict) -> float | None:
    """CPU minutes of all epochs, or None where some epochs were trained before CPU time was recorded."""
    cpu = history.get("cpu_seconds", [])
    return round(sum(cpu) / 60, 1) if cpu and len(cpu) == len(history.get("epoch_seconds", [])) else None


def export_trained(model, recipe: Recipe, protocol: str, history: dict, seconds: float, folder: Path | None = None,
                   split_sha: str | None = None, start: StartingPoint | None = None) -> Path:
    """Save the trained Keras model (its run folder), its served file (grouped: into weights/ and the registry) and
    the training history (with the split that the epochs before a warm restart were trained on, where that differs)."""
    from lungfake.serving.registry import ModelEntry, register, sha256_of
    from lungfake.serving.store import WeightsStore
    from lungfake.training.architectures import ARCHITECTURE_SPECS, DISPLAY_NAMES, TEST_MODEL
    from lungfake.training.export import write_served_model

    served = protocol == "grouped"
    spec = ARCHITECTURE_SPECS.get(recipe.arch, TEST_MODEL)
    trained = trained_model_path(recipe.arch, protocol)
    trained.parent.mkdir(parents=True, exist_ok=True)
    inference_copy(model).save(trained)
    target = WeightsStore.resolve(folder).file(f"{recipe.arch}.tflite") if served else unregistered_served_path(recipe.arch, protocol)
    write_served_model(model, spec.gradcam_layer, target, scorecam_layer=spec.scorecam_layer)
    record = {"recipe": _recipe_json(recipe), "protocol": protocol, "history": history, "last_session_minutes": round(seconds / 60, 1),
              "train_minutes": round(sum(history.get("epoch_seconds", [])) / 60, 1), "split_sha256": split_sha,
              "train_cpu_minutes": train_cpu_minutes(history), "keras_sha256": sha256_of(trained)}
    if start is not None and start.split_sha256 != split_sha:
        record["first_epochs"] = {"epochs": start.epochs_done, "split_sha256": start.split_sha256}
    elif start is not None and start.first_epochs:  # continued on the same split: its earliest epochs stay on record
        record["first_epochs"] = start.first_epochs
    path = history_path(recipe.arch, protocol, folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_json(path, record)
    if served:
        register(ModelEntry(
            arch=recipe.arch, file=target.name, sha256=sha256_of(target), input_size=recipe.last_train_size,
            class_names=CLASS_NAMES, gradcam_layer=spec.gradcam_layer, preprocessing=spec.preprocessing,
            split=protocol, scorecam_layer=spec.scorecam_layer, display_name=DISPLAY_NAMES.get(recipe.arch, recipe.arch),
            recipe={**_recipe_json(recipe), "train_minutes": record["train_minutes"],
                    "train_cpu_minutes": record["train_cpu_minutes"]},
        ), folder)
    log.info("saved %s (%.1f MB)", target, target.stat().st_size / 1e6)
    return target


def export_served(arch: str, keras_path: Path, folder: Path | None = None) -> Path:
    """Write the served file of arch from a trained Keras model of it (e.g. one restored from the repository's history)
    at the registered input size, and register it keeping its calibration; the Keras model is kept as the trained one
    (trained_model_path). Run `evaluate` next: float16 weights move probabilities by up to about 1e-3."""
    import shutil

    import keras

    from lungfake.serving.registry import load_registry, register, sha256_of
    from lungfake.serving.store import WeightsStore
    from lungfake.training.architectures import ARCHITECTURE_SPECS, TEST_MODEL, register_custom_layers
    from lungfake.training.export import write_served_model

    store = WeightsStore.resolve(folder)
    entry = load_registry(store.root).get(arch)
    if entry is None:
        raise TrainingError(f"There is no registered {arch} model to export; train it with python -m lungfake train.")
    register_custom_layers()
    try:
        model = keras.models.load_model(keras_path, compile=False, safe_mode=True)
    except (OSError, ValueError) as exc:
        raise TrainingError(f"{keras_path} is not a Keras model file ({exc}).") from None
    trained = trained_model_path(arch, entry.split)
    trained.parent.mkdir(parents=True, exist_ok=True)
    if Path(keras_path).resolve() != trained.resolve():
        shutil.copyfile(keras_path, trained)
    history_file = store.history_json(arch, entry.split)
    record = json.loads(history_file.read_text())
    _write_json(history_file, {**record, "keras_sha256": sha256_of(trained)})
    scorecam_layer = ARCHITECTURE_SPECS.get(arch, TEST_MODEL).scorecam_layer
    target = write_served_model(at_input_size(model, Recipe.from_json(entry.recipe), entry.input_size), entry.gradcam_layer,
                                store.file(f"{arch}.tflite"), scorecam_layer=scorecam_layer)
    register(replace(entry, file=target.name, sha256=sha256_of(target), scorecam_layer=scorecam_layer), store.root)
    return target


def serve_at_input_size(arch: str, size: int, folder: Path | None = None) -> Path:
    """Save the served model of arch again with the same weights in a network built at size, and register it
    uncalibrated (run `evaluate` next: it refits the temperature and the warning threshold at that size). A
    network trained with magnification augmentation can see tiles better at a larger size than it was trained
    at (the "FixRes" effect); choose the size on validation tiles (docs/decisions.md)."""

    import keras

    from lungfake.serving.registry import load_registry, register, sha256_of
    from lungfake.serving.store import WeightsStore
    from lungfake.training.architectures import register_custom_layers
    from lungfake.training.export import write_served_model

    entry = load_registry(folder).get(arch)
    if entry is None:
        raise TrainingError(f"There is no served {arch} model to serve at another size.")
    recipe = Recipe.from_json(entry.recipe)
    register_custom_layers()
    trained = keras.models.load_model(verified_trained_model(arch, entry.split, folder), compile=False, safe_mode=True)
    target = write_served_model(at_input_size(trained, recipe, size), entry.gradcam_layer, WeightsStore.resolve(folder).file(entry.file),
                                scorecam_layer=entry.scorecam_layer)
    register(replace(entry, sha256=sha256_of(target), input_size=size, temperature=1.0, low_confidence={}), folder)
    log.info("%s now served at %d px (trained at %d px); evaluate it to refit its calibration", arch, size,
             recipe.last_train_size)
    return target
