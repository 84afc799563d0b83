"""Overlay heatmaps (Grad-CAM, Score-CAM, occlusion, RISE) and their overlay on the tile.

Five ways of making them, named in each model's registry entry and chosen per model on validation tiles by how
faithful and how specific to the tile they are (faithfulness.py, evaluation/explanation_check.py): the default overlay
(``explanation_method``) from the first three, which cost at most 9 extra passes of the network; the precise overlay
offered on request (``precise_method``) from the last two, which measure the evidence directly:

- ``gradcam``: Grad-CAM at the last layer from the scoring pass itself, one value per cell of the feature map
  (4 to 7 cells a side: the network's stride is 32).
- ``gradcam-stitched``: the same Grad-CAM on the tile shifted by a quarter and three quarters of a cell, in each
  direction, and the four maps interleaved (shift-and-stitch, Long et al. 2015): twice the cells per side, each
  value still a plain Grad-CAM of the same network. The shifted views take their missing edge from the tile's own
  mirror image (reflection), so a cell at the tile's edge is no longer always at the network's zero-padded edge.
- ``scorecam``: Score-CAM (Wang et al. 2020) at a stride-16 layer, for a model whose last-layer map points away
  from its evidence (MobileNetV2): the layer's SCORECAM_CHANNELS most varied channels are each brought to the tile
  and laid over a blurred copy of it as a mask (the tile where the channel is high, blur where it is low), and each
  channel is weighed by how much its masked tile raises the class's calibrated probability over the blurred tile
  alone (the channel-variance shortcut is Faster Score-CAM's). A channel's variance is taken over the map without
  its outer ring of cells: the network's zero padding makes the ring differ whatever the tissue, and ranking by the
  whole map chose channels that light the rim. It needs the layer's activations from the file
  (model_file.ACTIVATIONS) and a second call of it, with SCORECAM_CHANNELS + 1 views per tile.
- ``occlusion`` (Zeiler and Fergus 2014): each patch of a grid blurred in turn, the map each cell's mean fall of the
  class's calibrated probability; 49 views a tile.
- ``rise`` (Petsiuk et al. 2018): RISE_MASKS random smooth masks, each blurring about half the tile; the map is, per
  pixel, the covariance of the class's fall with the mask, i.e. how much more the probability fell in the views that
  blurred that pixel. Blurring many parts at once measures evidence that lies in several places, which a network
  reading tissue texture has: on validation tiles it was the only method whose maps were specific to their tile for
  every served model (docs/decisions.md, "Tile-specific overlays").

Every served model ends feature map A -> global average pooling -> dense (weights W) -> softmax (model_file.py). Grad-CAM
(Selvaraju et al. 2017) weighs each channel k of A by the mean over the map of d(score of class c)/dA_k, the class
score being the dense layer's output before the softmax: for this head that gradient is W[k, c] / (cells in the map)
at every cell, so Grad-CAM is ReLU(sum_k W[k, c] A_k) / cells: the served file's class map for c, scaled. The
heatmap is then brought to the input size and scaled to a peak of 1 exactly as tf-keras-vis's Gradcam does
(tests/test_cli_and_cam.py compares the two on a Keras model); no gradient, and no TensorFlow, is needed.
"""
from __future__ import annotations

import functools

import cv2
import numpy as np
from scipy.ndimage import zoom

from lungfake.explain.faithfulness import blurred
from lungfake.serving.calibration import apply_temperature
from lungfake.serving.images import to_model_input
from lungfake.serving.inference import LoadedModel
from lungfake.serving.model_file import ACTIVATIONS, CLASS_MAPS, PROBABILITIES
from lungfake.serving.registry import GRADCAM, OCCLUSION, RISE, SCORECAM, STITCHED

STITCH_PHASES = 2  # shifted views per side: 4 extra passes of the network for a map with twice the cells per side
# masks per tile, chosen on validation tiles with the latency budget (docs/decisions.md, "Overlay methods"): 8 channels
# ranked without the rim beat 16 ranked with it, and 9 passes of MobileNetV2 keep a warm upload under 0.5 s
SCORECAM_CHANNELS = 8
# occlusion: the tile cut into OCCLUSION_CELLS cells a side; each patch of OCCLUSION_SPAN x OCCLUSION_SPAN cells, stepped
# one cell at a time, is blurred in a view of its own: 7 x 7 = 49 views a tile (docs/decisions.md, "Tile-specific overlays")
OCCLUSION_CELLS, OCCLUSION_SPAN = 8, 2
# RISE: RISE_MASKS random masks, each blurring RISE_SHARE of the tile in smooth blobs of about a RISE_CELLS-th of its
# side (chosen on validation tiles, docs/decisions.md "Tile-specific overlays"); the same masks for every tile
RISE_MASKS, RISE_CELLS, RISE_SHARE = 64, 16, 0.5
# perturbed views go through the file this many at a time: the interpreter keeps buffers for the largest batch it has
# run, and 64 views of a 224 px tile held about a gigabyte more for the rest of the process's life
PERTURBATION_BATCH = 16


def gradcam(class_map: np.ndarray, input_size: int) -> np.ndarray:
    """Relevance in [0, 1] at input_size x input_size from one class map (cells x cells) of a served model."""
    cam = np.maximum(np.asarray(class_map, np.float32), 0.0)
    cam = zoom(cam, (input_size / cam.shape[0], input_size / cam.shape[1]), order=1)  # as tf-keras-vis expands it
    cam = np.nan_to_num(np.maximum(cam, 0.0))
    peak = cam.max()
    return (cam / peak).astype(np.float32) if peak > 0 else np.zeros_like(cam, np.float32)


def centred_heatmap(cells: np.ndarray, input_size: int) -> np.ndarray:
    """Relevance in [0, 1] at input_size from a map whose cells tile the input edge to edge: each value sits at its
    cell's centre (not at the tile's corners, as tf-keras-vis's zoom puts the edge cells)."""
    cam = np.maximum(np.asarray(cells, np.float32), 0.0)
    cam = cv2.resize(cam, (input_size, input_size), interpolation=cv2.INTER_LINEAR)
    peak = cam.max()
    return (cam / peak).astype(np.float32) if peak > 0 else np.zeros_like(cam, np.float32)


def stitch_offsets(input_size: int, cells: int, phases: int = STITCH_PHASES) -> tuple[int, list[int]]:
    """(reflection padding, window offsets into the padded tile) of shift-and-stitch: the windows' cell centres
    interleave to phases x cells evenly spaced centres per side, the first half a fine cell from the edge."""
    stride = input_size // cells
    if stride % (2 * phases) or stride * cells != input_size:
        raise ValueError(f"a {input_size} px input with {cells} cells a side cannot be stitched in {phases} phases")
    return stride // 2, [stride // (2 * phases) + j * stride // phases for j in range(phases)]


def stitch_windows(pixels: np.ndarray, cells: int, phases: int = STITCH_PHASES) -> np.ndarray:
    """The shifted views of a batch of model inputs (phases**2 of them per input, view-major) that shift-and-stitch
    runs the network on, their missing edge taken from the inputs' mirror image."""
    size = pixels.shape[1]
    pad, offsets = stitch_offsets(size, cells, phases)
    padded = np.pad(np.asarray(pixels, np.float32), ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")
    return np.concatenate([padded[:, y : y + size, x : x + size] for y in offsets for x in offsets])


def interleaved(window_maps: np.ndarray, n: int, phases: int = STITCH_PHASES) -> np.ndarray:
    """(n, phases * cells, phases * cells, classes): the class maps of stitch_windows' views put back together."""
    cells = window_maps.shape[1]
    maps = window_maps.reshape(phases * phases, n, cells, cells, -1)
    fine = np.zeros((n, cells * phases, cells * phases, maps.shape[-1]), np.float32)
    for index, (row, column) in enumerate((r, c) for r in range(phases) for c in range(phases)):
        fine[:, row::phases, column::phases] = maps[index]
    return fine


def _unit_range(masks: np.ndarray) -> np.ndarray:
    """Each mask (last axis) scaled to 0-1; a flat one is 0 everywhere (the blurred tile alone)."""
    low, high = masks.min(axis=(0, 1)), masks.max(axis=(0, 1))
    spread = high - low
    return ((masks - low) * np.where(spread > 0, 1.0 / np.where(spread > 0, spread, 1.0), 0.0)).astype(np.float32)


def scorecam_views(image: np.ndarray, activations: np.ndarray, channels: int = SCORECAM_CHANNELS) -> tuple[np.ndarray, np.ndarray]:
    """(the views Score-CAM runs the network on for one model input: one per chosen channel, masked over the blurred
    tile, then the blurred tile itself; the chosen channels' activations, cells x cells x channels)."""
    image, size = np.asarray(image, np.float32), image.shape[0]
    inner = activations[1:-1, 1:-1] if min(activations.shape[:2]) > 2 else activations  # without the padded rim
    variance = inner.reshape(-1, activations.shape[-1]).var(axis=0)
    chosen = activations[..., np.argsort(-variance, kind="stable")[:channels]]
    resized = cv2.resize(chosen.astype(np.float32), (size, size), interpolation=cv2.INTER_LINEAR).reshape(size, size, -1)
    masks = _unit_range(resized).transpose(2, 0, 1)[..., None]
    base = blurred(image)
    views = np.empty((len(masks) + 1, size, size, 3), np.float32)
    np.multiply(masks, image - base, out=views[:-1])  # the tile where the mask is 1, the blurred tile where it is 0
    views[:-1] += base
    views[-1] = base
    return views, chosen


def scorecam_class_maps(loaded: LoadedModel, pixels: np.ndarray, activations: np.ndarray) -> np.ndarray:
    """(n, cells, cells, classes): Score-CAM of every class for these model inputs, from one more call of the file."""
    views, chosen = zip(*(scorecam_views(image, maps) for image, maps in zip(pixels, activations)))
    per_tile = len(views[0])
    calibrated = apply_temperature(loaded.run(np.concatenate(views))[PROBABILITIES], loaded.entry.temperature)
    calibrated = calibrated.reshape(len(pixels), per_tile, -1)
    gain = calibrated[:, :-1] - calibrated[:, -1:]  # each mask's rise of every class over the blurred tile
    return np.einsum("nhwk,nkc->nhwc", np.stack(chosen), gain).astype(np.float32)


def occlusion_views(image: np.ndarray, cells: int = OCCLUSION_CELLS, span: int = OCCLUSION_SPAN) -> np.ndarray:
    """The views occlusion runs the network on for one model input: the tile with one patch of span x span cells
    replaced by the blurred tile (the deletion test's baseline), patch by patch, row-major."""
    image, size = np.asarray(image, np.float32), image.shape[0]
    base, edges = blurred(image), np.linspace(0, size, cells + 1).round().astype(int)
    starts = range(cells - span + 1)
    views = np.repeat(image[None], len(starts) ** 2, axis=0)
    for index, (row, column) in enumerate((r, c) for r in starts for c in starts):
        top, bottom, left, right = edges[row], edges[row + span], edges[column], edges[column + span]
        views[index, top:bottom, left:right] = base[top:bottom, left:right]
    return views


def occlusion_cells(drops: np.ndarray, cells: int = OCCLUSION_CELLS, span: int = OCCLUSION_SPAN) -> np.ndarray:
    """(cells, cells, classes): each cell's mean fall of every class over the patches that cover it, from the falls of
    occlusion_views' patches (patches x classes)."""
    positions = cells - span + 1
    drops = drops.reshape(positions, positions, -1)
    total, count = np.zeros((cells, cells, drops.shape[-1])), np.zeros((cells, cells, 1))
    for row in range(span):
        for column in range(span):
            total[row : row + positions, column : column + positions] += drops
            count[row : row + positions, column : column + positions] += 1
    return (total / count).astype(np.float32)


def calibrated_probabilities(loaded: LoadedModel, views: np.ndarray) -> np.ndarray:
    """The calibrated probabilities of perturbed views, PERTURBATION_BATCH at a time."""
    return np.concatenate([apply_temperature(loaded.run(views[start : start + PERTURBATION_BATCH])[PROBABILITIES],
                                             loaded.entry.temperature)
                           for start in range(0, len(views), PERTURBATION_BATCH)])


def occlusion_class_maps(loaded: LoadedModel, pixels: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """(n, cells, cells, classes): how far each class's calibrated probability falls when each part of the tile is
    blurred (the evidence measured directly from the file), each input's 49 views through the file PERTURBATION_BATCH at a
    time; probabilities are the inputs' own (uncalibrated)."""
    maps = []
    for image, own in zip(pixels, apply_temperature(probabilities, loaded.entry.temperature)):
        maps.append(occlusion_cells(own[None] - calibrated_probabilities(loaded, occlusion_views(image))))
    return np.stack(maps)


@functools.lru_cache(maxsize=4)
def rise_masks(size: int, count: int = RISE_MASKS, cells: int = RISE_CELLS, share: float = RISE_SHARE,
               seed: int = 0) -> np.ndarray:
    """(count, size, size): where each RISE view is blurred (1) and left (0), smooth in between: a random grid of
    cells x cells (plus one) on or off, brought to the tile bilinearly and shifted by a random part of a cell (Petsiuk
    et al. 2018). Fixed by the seed, so a tile always gets the same overlay."""
    rng, cell = np.random.default_rng(seed), int(np.ceil(size / cells))
    grids = (rng.random((count, cells + 1, cells + 1)) < share).astype(np.float32)
    masks = np.empty((count, size, size), np.float32)
    for index, grid in enumerate(grids):
        smooth = cv2.resize(grid, ((cells + 1) * cell,) * 2, interpolation=cv2.INTER_LINEAR)
        top, left = rng.integers(0, cell, 2)
        masks[index] = smooth[top : top + size, left : left + size]
    masks.setflags(write=False)
    return masks


def rise_class_maps(loaded: LoadedModel, pixels: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """(n, size, size, classes): for every pixel, how much more each class's calibrated probability fell in the RISE
    views that blurred it than in those that left it (the covariance of the fall with the mask), each input's views
    through the file PERTURBATION_BATCH at a time; probabilities are the inputs' own (uncalibrated)."""
    size, temperature = pixels.shape[1], loaded.entry.temperature
    masks = rise_masks(size)
    centred = (masks - masks.mean(axis=0)).reshape(len(masks), -1)
    blend = masks[..., None]
    maps = []
    for image, own in zip(pixels, apply_temperature(probabilities, temperature)):
        views = image + blend * (blurred(image) - image)
        falls = own[None] - calibrated_probabilities(loaded, views)
        maps.append(((falls - falls.mean(axis=0)).T @ centred / len(masks)).T.reshape(size, size, -1))
    return np.stack(maps).astype(np.float32)


PERTURBATION_MAPS = {OCCLUSION: occlusion_class_maps, RISE: rise_class_maps}


def run_explained(loaded: LoadedModel, pixels: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """(the file's outputs for these model inputs, their class maps by the registered method). Stitched: from one
    call of the file, the shifted views riding along with the inputs, so the interpreter keeps one batch shape
    (changing it costs more than the views themselves). Score-CAM: a second call, whose masks come from the first.
    Occlusion and RISE: calls of their own per input, with its perturbed views."""
    if loaded.entry.explanation_method in PERTURBATION_MAPS:
        outputs = loaded.run(pixels)
        maps = PERTURBATION_MAPS[loaded.entry.explanation_method](loaded, np.asarray(pixels, np.float32), outputs[PROBABILITIES])
        return outputs, maps
    n, cells = len(pixels), loaded.feature_cells
    if loaded.entry.explanation_method == SCORECAM:
        outputs = loaded.run(pixels)
        return outputs, scorecam_class_maps(loaded, np.asarray(pixels, np.float32), outputs[ACTIVATIONS])
    if loaded.entry.explanation_method != STITCHED:
        outputs = loaded.run(pixels)
        return outputs, outputs[CLASS_MAPS]
    outputs = loaded.run(np.concatenate([np.asarray(pixels, np.float32), stitch_windows(pixels, cells)]))
    return {name: value[:n] for name, value in outputs.items()}, interleaved(outputs[CLASS_MAPS][n:], n)


def heatmap(method: str, class_map: np.ndarray, input_size: int) -> np.ndarray:
    """Relevance in [0, 1] at the input size from one class's map made by the method."""
    return gradcam(class_map, input_size) if method == GRADCAM else centred_heatmap(class_map, input_size)


def heatmaps(loaded: LoadedModel, pixels: np.ndarray, class_indices) -> list[np.ndarray]:
    """The registered explanation of each model input for the given class (a pass of its own: Scorer makes them from
    its scoring pass, run_explained)."""
    class_maps = run_explained(loaded, np.asarray(pixels, np.float32))[1]
    return [heatmap(loaded.entry.explanation_method, maps[..., c], loaded.entry.input_size)
            for maps, c in zip(class_maps, class_indices)]


def methods_for(loaded: LoadedModel) -> list[str]:
    """The methods a served model can use: a stride too small to shift leaves out shift-and-stitch, a file without a
    Score-CAM layer's activations leaves out Score-CAM."""
    methods = [GRADCAM]
    try:
        stitch_offsets(loaded.entry.input_size, loaded.feature_cells)
        methods.append(STITCHED)
    except ValueError:
        pass
    return methods + ([SCORECAM] if loaded.activation_cells else []) + [OCCLUSION, RISE]


def cells_per_side(method: str, feature_cells: int, activation_cells: int | None = None) -> int:
    """The effective resolution of a method's maps: cells per side before they are brought to the tile."""
    if method == SCORECAM:
        return int(activation_cells)
    if method == OCCLUSION:
        return OCCLUSION_CELLS
    if method == RISE:
        return RISE_CELLS
    return feature_cells * (STITCH_PHASES if method == STITCHED else 1)


class OverlayExplainer:
    """The registered overlay of one served model for any image (Scorer makes it from the scoring pass itself)."""

    def __init__(self, loaded: LoadedModel):
        self.loaded, self.entry = loaded, loaded.entry

    def heatmap(self, rgb: np.ndarray, class_name: str) -> np.ndarray:
        """Relevance in [0, 1] at the model's input size for the given class, of an RGB image of any size."""
        return self.heatmap_of_input(to_model_input(rgb, self.entry.input_size), self.entry.class_names.index(class_name))

    def heatmap_of_input(self, model_input: np.ndarray, class_index: int) -> np.ndarray:
        """The same for an image already at the model's input size, by the model's registered method."""
        return heatmaps(self.loaded, np.asarray(model_input, np.float32)[None], [class_index])[0]


def overlay(rgb: np.ndarray, heatmap: np.ndarray, opacity: float = 0.45) -> np.ndarray:
    """The tile with the heatmap (jet colours) blended over it at the given opacity, at the tile's size; where the
    heatmap is NaN (a part of the tile the models did not see, scale.py) the tile is left as it is."""
    height, width = rgb.shape[:2]
    seen = cv2.resize(np.isfinite(heatmap).astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST).astype(bool)
    resized = cv2.resize(np.nan_to_num(heatmap.astype(np.float32)), (width, height), interpolation=cv2.INTER_LINEAR)
    coloured = cv2.applyColorMap(np.uint8(np.clip(resized, 0, 1) * 255), cv2.COLORMAP_JET)
    coloured = cv2.cvtColor(coloured, cv2.COLOR_BGR2RGB)
    alpha = np.where(seen, opacity, 0.0)[..., None]
    blended = (1.0 - alpha) * rgb.astype(np.float32) + alpha * coloured.astype(np.float32)
    return np.clip(blended, 0, 255).astype(np.uint8)
