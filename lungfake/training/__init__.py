"""Training from scratch: architectures, augmentation, the trainer with checkpoints, and export of served files.

May import: lungfake.data, lungfake.serving (to write served files and register them), lungfake.classes,
lungfake.errors. TensorFlow and Keras are imported here only (requirements-train.txt)."""
