"""Overlays: the Grad-CAM family made from the served files' outputs (cam) and the measures of how far a map can be
trusted (faithfulness).

May import: lungfake.serving, lungfake.classes, lungfake.errors. Never data, training or evaluation."""
