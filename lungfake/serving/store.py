"""The weights store: the one owner of every path under ``weights/``.

Resolve it once (``WeightsStore.resolve()``: the argument, else ``$LUNGFAKE_WEIGHTS_DIR``, else the
repository's ``weights/``) and pass it down; nothing else spells a folder or file name under it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

WEIGHTS_DIR_ENV = "LUNGFAKE_WEIGHTS_DIR"
DEFAULT_WEIGHTS_DIR = Path(__file__).resolve().parents[2] / "weights"


@dataclass(frozen=True)
class WeightsStore:
    root: Path

    @staticmethod
    def resolve(override: str | os.PathLike | None = None) -> WeightsStore:
        if isinstance(override, WeightsStore):
            return override
        return WeightsStore(Path(override or os.environ.get(WEIGHTS_DIR_ENV) or DEFAULT_WEIGHTS_DIR))

    @property
    def registry(self) -> Path:
        return self.root / "registry.json"

    def file(self, name: str) -> Path:
        """A file named in the registry (a model, the OOD reference), relative to the store."""
        return self.root / name

    def split_csv(self, protocol: str) -> Path:
        return self.root / "splits" / f"{protocol}.csv"

    def earlier_split_csv(self, protocol: str, sha256: str) -> Path:
        """A split that models were trained on before the committed one folded leaks into train."""
        return self.root / "splits" / "earlier" / f"{protocol}-{sha256[:12]}.csv"

    def audit_json(self, protocol: str) -> Path:
        return self.root / "splits" / f"{protocol}_audit.json"

    def metrics_json(self, name: str, protocol: str) -> Path:
        return self.root / "metrics" / f"{name}_{protocol}.json"

    def all_metrics(self) -> list[Path]:
        return sorted((self.root / "metrics").glob("*.json"))

    def history_json(self, arch: str, protocol: str) -> Path:
        return self.root / "history" / f"{arch}_{protocol}.json"

    def sprite(self, name: str) -> Path:
        return self.root / "sprites" / name
