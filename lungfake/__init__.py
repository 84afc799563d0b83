"""lungfake: lung histopathology tile classification, usable without the app.

The parts, from the top down (imports run one way; .importlinter holds the contracts):
cli -> reports -> evaluation -> training -> data | scoring -> explain -> serving -> classes, errors.

`from lungfake import Scorer` gives the one scoring path (lungfake.scoring.scoring.Scorer)."""


def __getattr__(name: str):
    # lazily, so that importing any part of the package does not load the served models' runtime
    if name == "Scorer":
        from lungfake.scoring.scoring import Scorer

        return Scorer
    raise AttributeError(f"module 'lungfake' has no attribute {name!r}")
