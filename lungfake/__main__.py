import os
import sys

# TensorFlow's C++ notices (CPU features and the like) are not for a user of the CLI; errors still show. Its
# oneDNN line at import prints regardless (absl logs before TensorFlow reads this; tensorflow/tensorflow#100442).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from lungfake.cli import main

sys.exit(main())
