"""Held-out evaluation and everything fitted on validation tiles: the typed metrics schema, baselines, robustness,
other labs' images, model comparisons, the error browser's data, and the fitting of temperatures, the subtype rule,
the scale setting, the out-of-distribution reference and each model's overlay method.

May import: lungfake.training, lungfake.data, lungfake.scoring, lungfake.explain, lungfake.serving and the core."""
