"""The one scoring path every caller takes (tile, batch, region, slide): Scorer, and the app's models' process.

May import: lungfake.explain, lungfake.serving, lungfake.classes, lungfake.errors. Never data, training or
evaluation: what a request runs stays lean."""
