"""A DataCollection in one HDF5 file: arrays chunked and compressed, affine and metadata beside each array.

Layout (format ``medpipes.data`` version 1): root attributes ``format``, ``version``, ``case_order`` (JSON);
``/cases/<case_id>`` with attributes ``subject`` and ``targets`` (JSON) and ``group_order`` (JSON); under
it ``<group>/<channel>`` datasets with attributes ``affine`` (4x4 float64), ``meta`` (JSON of ImageMeta)
and ``is_label``; each group has attributes ``is_label`` and ``channel_order`` (JSON).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from medpipes.core.data.group import DataGroup
from medpipes.core.data.sources import Hdf5Source, meta_to_json
from medpipes.core.errors import InputError
from medpipes.core.image import Image
from medpipes.core.io.atomic import atomic_path

if TYPE_CHECKING:
    from medpipes.core.data.collection import DataCollection

FORMAT = "medpipes.data"
VERSION = 1
CHUNK_EDGE = 64


def write_collection(
    collection: DataCollection,
    path: Path,
    *,
    augmentation: Any = None,
    copies: int = 1,
    seed: int = 0,
    compression: str | None = "gzip",
    compression_level: int = 4,
) -> Path:
    """Write ``collection`` (optionally ``copies`` augmented versions of each case) atomically to ``path``."""
    import h5py

    if augmentation is not None and copies < 1:
        raise InputError(f"copies={copies}: write at least one augmented copy per case")
    options: dict[str, Any] = {}
    if compression is not None:
        options["compression"] = compression
        if compression == "gzip":
            options["compression_opts"] = int(compression_level)
    case_order: list[str] = []
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as handle:
        handle.attrs["format"] = FORMAT
        handle.attrs["version"] = VERSION
        cases = handle.create_group("cases")
        for case_index, case in enumerate(collection.cases.values()):
            if augmentation is None:
                versions = [(case.case_id, {g: case[g].images() for g in case.groups})]
            else:
                versions = []
                for copy in range(copies):
                    rng = np.random.default_rng([seed, case_index, copy])
                    augmented = augmentation(case.load(), rng)
                    versions.append((f"{case.case_id}_aug{copy}", _unstack(case, augmented)))
            for case_id, groups in versions:
                _check_name(case_id, "case id", path)
                node = cases.create_group(case_id)
                node.attrs["subject"] = case.subject
                node.attrs["targets"] = json.dumps(case.targets)
                node.attrs["group_order"] = json.dumps(list(groups))
                for group_name, channels in groups.items():
                    _check_name(group_name, f"case '{case_id}' group name", path)
                    group_node = node.create_group(group_name)
                    group_node.attrs["is_label"] = bool(case[group_name].is_label)
                    group_node.attrs["channel_order"] = json.dumps(list(channels))
                    for channel, image in channels.items():
                        _check_name(channel, f"case '{case_id}' group '{group_name}' channel name", path)
                        where = f"{path}: case '{case_id}', {group_name}/{channel}"
                        data = group_node.create_dataset(
                            channel, data=image.array, chunks=_chunks(image.array.shape), **options
                        )
                        data.attrs["affine"] = image.affine
                        data.attrs["meta"] = meta_to_json(image.meta, where)
                        data.attrs["is_label"] = bool(image.is_label)
                case_order.append(case_id)
        handle.attrs["case_order"] = json.dumps(case_order)
    return path


def read_collection(path: Path) -> DataCollection:
    """Open a file written by ``write_collection``; only attributes are read now, voxels on request."""
    import h5py
    from medpipes.core.data.collection import Case, DataCollection

    if not path.is_file():
        raise InputError(f"{path}: HDF5 file does not exist; write it with DataCollection.to_hdf5 first")
    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise InputError(f"{path}: not a readable HDF5 file ({exc}); rewrite it with DataCollection.to_hdf5") from None
    with handle:
        if handle.attrs.get("format") != FORMAT:
            raise InputError(f"{path}: not a medpipes data file (format attribute missing); write it with to_hdf5")
        if int(handle.attrs.get("version", -1)) > VERSION:
            raise InputError(f"{path}: format version {handle.attrs['version']} is newer than this medpipes reads; upgrade")
        cases = []
        for case_id in json.loads(handle.attrs["case_order"]):
            node = handle["cases"][case_id]
            groups = {}
            for group_name in json.loads(node.attrs["group_order"]):
                group_node = node[group_name]
                is_label = bool(group_node.attrs["is_label"])
                sources = {}
                for channel in json.loads(group_node.attrs["channel_order"]):
                    data = group_node[channel]
                    sources[channel] = Hdf5Source(
                        path=path,
                        key=data.name,
                        spatial_shape=tuple(int(n) for n in data.shape[:3]),  # type: ignore[arg-type]
                        affine=np.array(data.attrs["affine"], dtype=np.float64),
                        meta_json=str(data.attrs["meta"]),
                        is_label=bool(data.attrs["is_label"]),
                    )
                groups[group_name] = DataGroup(group_name, sources, is_label=is_label, case_id=case_id)
            cases.append(
                Case(case_id, groups, subject=str(node.attrs["subject"]), targets=json.loads(node.attrs["targets"]))
            )
    return DataCollection(cases, source=str(path))


def _unstack(case: Any, augmented: dict[str, Image]) -> dict[str, dict[str, Image]]:
    """Split each augmented 4D group back into its 3D channels."""
    out: dict[str, dict[str, Image]] = {}
    for group_name, image in augmented.items():
        channels = case[group_name].channels
        if image.array.ndim != 4 or image.array.shape[3] != len(channels):
            raise InputError(
                f"case '{case.case_id}': group '{group_name}' has {len(channels)} channels but its stacked array is "
                f"{image.array.shape}; augmented writing needs 3D channels (split 4D inputs into channels first)"
            )
        cls = type(image)
        out[group_name] = {ch: cls(image.array[..., n], image.affine, image.meta) for n, ch in enumerate(channels)}
    return out


def _chunks(shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(min(CHUNK_EDGE, n) for n in shape[:3]) + tuple(shape[3:])


def _check_name(name: str, what: str, path: Path) -> None:
    if not name or "/" in name or name in (".", ".."):
        raise InputError(f"{path}: {what} '{name}' cannot name an HDF5 node; use a name without '/'")
