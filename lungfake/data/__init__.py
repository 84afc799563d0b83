"""LC25000 on disk: reading tiles, families of copies, the split protocols, the copy audit, synthetic copies.

May import: lungfake.classes, lungfake.errors. Knows nothing of models."""
