"""Training from scratch on a split: tf.data pipeline, histology augmentation, checkpoint/resume."""
from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .classes import CLASS_NAMES, class_index
from .data import read_rgb
from .errors import DatasetError
from .splits import SplitRow, rows_in


@dataclass(frozen=True)
class Recipe:
    arch: str
    input_size: int
    epochs: int
    batch_size: int = 32
    learning_rate: float = 2e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 0.5
    label_smoothing: float = 0.1
    dropout: float = 0.2
    max_rotation_degrees: float = 25.0
    hue_delta: float = 0.04
    saturation_range: tuple[float, float] = (0.75, 1.25)
    brightness_delta: float = 0.1
    contrast_range: tuple[float, float] = (0.8, 1.2)
    init: str = "scratch"
    seed: int = 0
    extra: dict = field(default_factory=dict)


DEFAULT_RECIPES = {
    "mobilenetv2": Recipe("mobilenetv2", input_size=128, epochs=4),
    "resnet50": Recipe("resnet50", input_size=112, epochs=2),
}


def load_pixels(root: Path, rows: list[SplitRow], size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixels (n, size, size, 3 uint8) and class indices of the readable rows."""
    images, labels = [], []
    for row in rows:
        pixels = read_rgb(root / row.path, size)
        if pixels is not None:
            images.append(pixels)
            labels.append(class_index(row.label))
    if not images:
        raise DatasetError(f"None of the {len(rows)} split rows could be read under {root}.")
    return np.stack(images), np.asarray(labels, np.int32)


def _augment_one(image, recipe: Recipe):
    import tensorflow as tf

    image = tf.image.random_flip_left_right(image)
    image = tf.image.random_flip_up_down(image)
    image = tf.image.rot90(image, tf.random.uniform((), 0, 4, dtype=tf.int32))
    image = tf.cast(image, tf.float32) / 255.0
    image = tf.image.random_hue(image, recipe.hue_delta)
    image = tf.image.random_saturation(image, *recipe.saturation_range)
    image = tf.image.random_brightness(image, recipe.brightness_delta)
    image = tf.image.random_contrast(image, *recipe.contrast_range)
    return tf.clip_by_value(image, 0.0, 1.0) * 255.0


def make_dataset(images: np.ndarray, labels: np.ndarray, recipe: Recipe, training: bool):
    """Batches of (pixels 0-255 float32, one-hot labels); augmented and reshuffled when training."""
    import keras
    import tensorflow as tf

    n_classes = len(CLASS_NAMES)
    ds = tf.data.Dataset.from_tensor_slices((images, labels))
    if training:
        ds = ds.shuffle(len(images), seed=recipe.seed, reshuffle_each_iteration=True)
        ds = ds.map(lambda x, y: (_augment_one(x, recipe), y), num_parallel_calls=tf.data.AUTOTUNE)
    else:
        ds = ds.map(lambda x, y: (tf.cast(x, tf.float32), y))
    ds = ds.batch(recipe.batch_size)
    if training and recipe.max_rotation_degrees:
        rotate = keras.layers.RandomRotation(recipe.max_rotation_degrees / 360.0, fill_mode="reflect", seed=recipe.seed)
        ds = ds.map(lambda x, y: (rotate(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.map(lambda x, y: (x, tf.one_hot(y, n_classes)))
    return ds.prefetch(tf.data.AUTOTUNE)


def compile_for_training(model, recipe: Recipe, steps_per_epoch: int) -> None:
    import keras

    total = max(1, recipe.epochs * steps_per_epoch)
    warmup = int(recipe.warmup_epochs * steps_per_epoch)
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup else recipe.learning_rate,
        decay_steps=max(1, total - warmup),
        warmup_target=recipe.learning_rate if warmup else None,
        warmup_steps=warmup,
    )
    model.compile(
        optimizer=keras.optimizers.AdamW(learning_rate=schedule, weight_decay=recipe.weight_decay),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=recipe.label_smoothing),
        metrics=["accuracy"],
        # XLA gave no speed-up on the 2-core CPU here (measured 16 img/s either way): keep plain oneDNN kernels.
        jit_compile=False,
    )


class _ProgressLog:
    """A keras callback (built lazily so keras loads only when training) that logs and checkpoints."""

    @staticmethod
    def create(run_dir: Path, steps_per_epoch: int, batch_size: int, history: dict, log_every: int = 50):
        import keras

        class ProgressLog(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                self.epoch, self.started = epoch, time.perf_counter()

            def on_train_batch_end(self, batch, logs=None):
                if (batch + 1) % log_every and batch + 1 != steps_per_epoch:
                    return
                elapsed = time.perf_counter() - self.started
                rate = (batch + 1) * batch_size / elapsed
                eta = (steps_per_epoch - batch - 1) * batch_size / rate
                print(
                    f"epoch {self.epoch + 1} step {batch + 1}/{steps_per_epoch} "
                    f"loss {logs['loss']:.4f} acc {logs['accuracy']:.4f} {rate:.1f} img/s eta {eta / 60:.1f} min",
                    file=sys.stderr,
                    flush=True,
                )

            def on_epoch_end(self, epoch, logs=None):
                for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
                    history.setdefault(key, []).append(float(logs[key]))
                history.setdefault("epoch_seconds", []).append(round(time.perf_counter() - self.started, 1))
                self.model.save(run_dir / "checkpoint.keras")
                _write_json(run_dir / "state.json", {"epochs_done": epoch + 1, "history": history})
                print(f"epoch {epoch + 1} done: " + json.dumps({k: v[-1] for k, v in history.items()}), file=sys.stderr, flush=True)

        return ProgressLog()


class _TimeBudget:
    """Stops training after the epoch during which the budget ran out (the checkpoint allows a resume)."""

    @staticmethod
    def create(max_minutes: float):
        import keras

        class TimeBudget(keras.callbacks.Callback):
            def on_train_begin(self, logs=None):
                self.started = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                if time.perf_counter() - self.started >= max_minutes * 60:
                    print(f"time budget of {max_minutes} min reached after epoch {epoch + 1}", file=sys.stderr, flush=True)
                    self.model.stop_training = True

        return TimeBudget()


def _write_json(path: Path, payload: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=2))
    os.replace(tmp, path)


def _resume_or_build(run_dir: Path, recipe: Recipe, steps_per_epoch: int):
    import keras

    from .models import build_model

    state_path, checkpoint = run_dir / "state.json", run_dir / "checkpoint.keras"
    if state_path.exists() and checkpoint.exists():
        state = json.loads(state_path.read_text())
        print(f"resuming {run_dir} after epoch {state['epochs_done']}", file=sys.stderr, flush=True)
        return keras.models.load_model(checkpoint), state["epochs_done"], state["history"]
    model = build_model(recipe.arch, recipe.input_size, init=recipe.init, dropout=recipe.dropout)
    compile_for_training(model, recipe, steps_per_epoch)
    return model, 0, {}


def train(root: Path, rows: list[SplitRow], recipe: Recipe, run_dir: Path, max_minutes: float | None = None):
    """Train (or resume) in run_dir; returns (model, history, finished)."""
    import keras

    run_dir.mkdir(parents=True, exist_ok=True)
    _write_json(run_dir / "recipe.json", asdict(recipe))
    keras.utils.set_random_seed(recipe.seed)
    train_x, train_y = load_pixels(root, rows_in(rows, "train"), recipe.input_size)
    val_x, val_y = load_pixels(root, rows_in(rows, "val"), recipe.input_size)
    steps = int(np.ceil(len(train_x) / recipe.batch_size))
    model, done, history = _resume_or_build(run_dir, recipe, steps)
    if done < recipe.epochs:
        print(f"training {recipe.arch}: {len(train_x)} train / {len(val_x)} val tiles, epochs {done + 1}-{recipe.epochs}", file=sys.stderr, flush=True)
        model.fit(
            make_dataset(train_x, train_y, recipe, training=True),
            validation_data=make_dataset(val_x, val_y, recipe, training=False),
            epochs=recipe.epochs,
            initial_epoch=done,
            verbose=0,
            callbacks=[
                _ProgressLog.create(run_dir, steps, recipe.batch_size, history),
                *([_TimeBudget.create(max_minutes)] if max_minutes is not None else []),
            ],
        )
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
    from .registry import weights_dir

    return weights_dir(folder) / "history" / f"{arch}_{protocol}.json"


def unregistered_model_path(arch: str, protocol: str) -> Path:
    """Where a model of a non-served protocol (random) is kept: locally, never committed."""
    return run_dir_for(arch, protocol) / "model.keras"


def export_trained(model, recipe: Recipe, protocol: str, history: dict, seconds: float, folder: Path | None = None) -> Path:
    """Save the inference model (grouped: into weights/ and the registry) and the training history."""
    from .models import ARCHITECTURE_SPECS
    from .registry import ModelEntry, register, sha256_of, weights_dir

    served = protocol == "grouped"
    target = weights_dir(folder) / f"{recipe.arch}.keras" if served else unregistered_model_path(recipe.arch, protocol)
    target.parent.mkdir(parents=True, exist_ok=True)
    inference_copy(model).save(target)
    record = {"recipe": asdict(recipe), "protocol": protocol, "history": history, "last_session_minutes": round(seconds / 60, 1),
              "train_minutes": round(sum(history.get("epoch_seconds", [])) / 60, 1)}
    path = history_path(recipe.arch, protocol, folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_json(path, record)
    if served:
        spec = ARCHITECTURE_SPECS[recipe.arch]
        register(ModelEntry(
            arch=recipe.arch, file=target.name, sha256=sha256_of(target), input_size=recipe.input_size,
            class_names=CLASS_NAMES, gradcam_layer=spec.gradcam_layer, preprocessing=spec.preprocessing,
            split=protocol, display_name={"resnet50": "ResNet50", "mobilenetv2": "MobileNetV2"}.get(recipe.arch, recipe.arch),
            recipe={**asdict(recipe), "train_minutes": record["train_minutes"]},
        ), folder)
    print(f"saved {target} ({target.stat().st_size / 1e6:.1f} MB)", file=sys.stderr)
    return target
