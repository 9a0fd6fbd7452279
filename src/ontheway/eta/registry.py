"""Model files on disk, versioned: ``<eta_model_dir>/<region>/v0001.json``, ``v0002.json``...
Training writes the next version; predictions use the highest. A process notices a new
version within ``RECHECK_S`` without a restart. A region without a model, or whose newest file
cannot be used, is answered by the baseline, and the answer says why (``ModelMissing``).
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from ontheway.eta.model import EtaModel, ModelFileError

log = logging.getLogger(__name__)

RECHECK_S = 30.0
_VERSION = re.compile(r"^v(\d{4,})\.json$")


def versions(folder: Path) -> list[Path]:
    """A region's model files, oldest first."""
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _VERSION.match(p.name))]
    return [p for _, p in sorted(found)]


def next_path(root: Path, region: str) -> Path:
    """Where the region's next version goes."""
    existing = versions(root / region)
    number = _number(existing[-1]) + 1 if existing else 1
    return root / region / f"v{number:04d}.json"


def _number(path: Path) -> int:
    match = _VERSION.match(path.name)
    return int(match.group(1)) if match else 0


def latest(root: Path, region: str) -> Path | None:
    """The region's newest model file, if any."""
    found = versions(root / region)
    return found[-1] if found else None


@dataclass
class ModelMissing:
    """Why a region's estimate is the baseline."""

    reason: str


@dataclass
class Registry:
    """The newest model of each region, loaded once and re-checked every ``RECHECK_S``."""

    root: Path
    _cache: dict[str, tuple[float, Path | None, EtaModel | ModelMissing]] = field(
        default_factory=dict
    )

    def model(self, region: str) -> EtaModel | ModelMissing:
        """The region's model, or why there is none."""
        now = time.monotonic()
        cached = self._cache.get(region)
        if cached is not None and now - cached[0] < RECHECK_S:
            return cached[2]
        path = latest(self.root, region)
        if cached is not None and cached[1] == path:
            self._cache[region] = (now, path, cached[2])
            return cached[2]
        found: EtaModel | ModelMissing
        if path is None:
            found = ModelMissing(f"no ETA model for region {region!r}: baseline estimate")
        else:
            try:
                found = EtaModel.load(path)
            except (ModelFileError, OSError) as exc:
                log.error("ETA model %s unusable: %s", path, exc)
                found = ModelMissing(f"the ETA model of {region!r} cannot be used ({exc}): "
                                     "baseline estimate")  # fmt: skip
        self._cache[region] = (now, path, found)
        return found
