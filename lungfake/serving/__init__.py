"""What the app serves, and only that: the weights store and its registry (read and checked once), the served model
files open in LiteRT, safe image decoding, the out-of-distribution screen, the scale view, calibration as applied and
the verdict rules as applied.

May import: lungfake.classes, lungfake.errors. Never data, training, evaluation or anything above (import-linter
contracts in .importlinter); never TensorFlow or Keras (the app's install has neither). Fitting lives in
lungfake.evaluation."""
