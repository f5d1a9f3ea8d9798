"""DataGroup: one case's named set of channels (e.g. FLAIR/T1/T1c inputs, or a ground-truth label map)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from functools import cached_property

import numpy as np
from medpipes.core.data.sources import GridInfo, Source
from medpipes.core.errors import GeometryError
from medpipes.core.image import Image, LabelMap


class DataGroup(Mapping[str, Image]):
    """Channels of one group in one case, loaded only when asked; derived attributes are cached.

    ``group[channel]`` reads that channel as an Image (a LabelMap for label groups);
    ``group.stacked()`` gives all channels on one grid as a 4D Image, channels on the last axis.
    """

    def __init__(self, name: str, channels: Mapping[str, Source], *, is_label: bool = False, case_id: str = "") -> None:
        if not channels:
            raise GeometryError(f"case '{case_id}': group '{name}' has no channels; give at least one")
        self.name = name
        self.is_label = is_label
        self.case_id = case_id
        self.sources: dict[str, Source] = dict(channels)

    # --- mapping of channel name -> Image ---------------------------------------------------
    def __getitem__(self, channel: str) -> Image:
        if channel not in self.sources:
            raise KeyError(f"case '{self.case_id}', group '{self.name}': no channel '{channel}' (has {self.channels})")
        return self.sources[channel].load()

    def __iter__(self) -> Iterator[str]:
        return iter(self.sources)

    def __len__(self) -> int:
        return len(self.sources)

    @property
    def channels(self) -> list[str]:
        """Channel names in stacking order."""
        return list(self.sources)

    # --- derived attributes, computed on request and cached ----------------------------------
    @cached_property
    def grid(self) -> GridInfo:
        """The grid all channels share (GeometryError naming the case and both channels when they differ)."""
        names = self.channels
        first = self.sources[names[0]].grid()
        for name in names[1:]:
            other = self.sources[name].grid()
            if not first.matches(other):
                raise GeometryError(
                    f"case '{self.case_id}': group '{self.name}' channels '{names[0]}' ({first.describe()}) and "
                    f"'{name}' ({other.describe()}) are on different grids; resample them onto one grid first"
                )
        return first

    @property
    def spatial_shape(self) -> tuple[int, int, int]:
        """Spatial shape shared by the channels."""
        return self.grid.spatial_shape

    @property
    def affine(self) -> np.ndarray:
        """Voxel-to-RAS affine shared by the channels."""
        return self.grid.affine

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along i, j, k."""
        return tuple(float(s) for s in np.linalg.norm(self.grid.affine[:3, :3], axis=0))  # type: ignore[return-value]

    @cached_property
    def intensity_range(self) -> dict[str, tuple[float, float]]:
        """Per channel (min, max) of the voxel values (loads each channel once)."""
        out = {}
        for name in self.channels:
            array = self[name].array
            out[name] = (float(np.min(array)), float(np.max(array)))
        return out

    # --- loading ---------------------------------------------------------------------------
    def images(self) -> dict[str, Image]:
        """Every channel, loaded."""
        return {name: self[name] for name in self.channels}

    def stacked(self) -> Image:
        """All channels as one 4D Image (i, j, k, channel), in channel order, on their shared grid."""
        grid = self.grid
        images = self.images()
        arrays = []
        for name, image in images.items():
            if not GridInfo(image.spatial_shape, image.affine).matches(grid):
                raise GeometryError(
                    f"case '{self.case_id}': group '{self.name}' channel '{name}' loaded on "
                    f"{GridInfo(image.spatial_shape, image.affine).describe()}, its header said {grid.describe()}; "
                    "re-export the file"
                )
            arrays.append(image.array if image.array.ndim == 4 else image.array[..., np.newaxis])
        array = arrays[0] if len(arrays) == 1 else np.concatenate(arrays, axis=3)
        first = next(iter(images.values()))
        meta = first.meta.replace(extra={**dict(first.meta.extra), "channels": self.channels})
        return (LabelMap if self.is_label else Image)(array, grid.affine, meta)

    def __repr__(self) -> str:
        kind = "labels" if self.is_label else "image"
        return f"DataGroup('{self.name}', {kind}, channels={self.channels}, case='{self.case_id}')"
