"""Grid: an image's spatial shape and affine, recorded so a spatial step can be undone exactly."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import nibabel as nib
import numpy as np

from medpipes.core.errors import GeometryError
from medpipes.core.image import Image, validate_affine


@dataclass(frozen=True, eq=False)
class Grid:
    """A voxel grid: spatial shape (i, j, k) and its 4x4 voxel-to-RAS affine (read-only copy)."""

    spatial_shape: tuple[int, int, int]
    affine: np.ndarray

    def __post_init__(self) -> None:
        shape = tuple(int(n) for n in self.spatial_shape)
        if len(shape) != 3 or min(shape) < 1:
            raise GeometryError(f"grid shape {self.spatial_shape} is not three positive sizes; give (ni, nj, nk)")
        affine = validate_affine(self.affine).copy()
        affine.flags.writeable = False
        object.__setattr__(self, "spatial_shape", shape)
        object.__setattr__(self, "affine", affine)

    @classmethod
    def of(cls, image: Image) -> "Grid":
        """The grid an image lies on."""
        return cls(image.spatial_shape, image.affine)

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along i, j, k."""
        return tuple(float(s) for s in np.linalg.norm(self.affine[:3, :3], axis=0))  # type: ignore[return-value]

    @property
    def orientation(self) -> str:
        """Axis codes such as 'RAS' (closest world axis of each array axis)."""
        return "".join(nib.aff2axcodes(self.affine))

    def matches(self, other: "Grid", atol_mm: float = 1e-3) -> bool:
        """True when shapes are equal and affines agree within ``atol_mm``."""
        return self.spatial_shape == other.spatial_shape and bool(np.allclose(self.affine, other.affine, atol=atol_mm))

    def describe(self) -> str:
        """One line: shape, spacing, orientation and origin."""
        spacing = ", ".join(f"{s:.4g}" for s in self.spacing)
        origin = ", ".join(f"{v:.4g}" for v in self.affine[:3, 3])
        return f"shape {self.spatial_shape}, spacing ({spacing}) mm, orientation {self.orientation}, origin ({origin}) mm"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"spatial_shape": list(self.spatial_shape), "affine": self.affine.tolist()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Grid":
        """Inverse of ``to_dict``."""
        return cls(tuple(data["spatial_shape"]), np.array(data["affine"], dtype=np.float64))  # type: ignore[arg-type]


def require_one_grid(images: Mapping[str, Image], step: str) -> Grid:
    """The grid shared by all ``images``; GeometryError naming both grids when two differ."""
    names = list(images)
    if not names:
        raise GeometryError(f"{step}: no images given; pass at least one")
    first = names[0]
    grid = Grid.of(images[first])
    for name in names[1:]:
        other = Grid.of(images[name])
        if not grid.matches(other):
            raise GeometryError(
                f"{step}: inputs '{first}' ({grid.describe()}) and '{name}' ({other.describe()}) "
                "are on different grids; resample or co-register them onto one grid first"
            )
    return grid
