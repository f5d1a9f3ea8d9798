"""Pipeline: a ``pipeline.yaml`` spec -> inputs -> preprocess chain -> inferer(model) -> back onto each
input's native grid -> postprocess -> outputs (NIfTI, masked image, DICOM SEG, qc.png, report.json).

A spec (every key but ``name`` optional; relative model paths start at the spec's folder)::

    name: brain_extraction
    model: brain-extraction-unet          # manifest id, or a .safetensors checkpoint (with its .json)
    inputs: {modality: MR, min_slices: 16}
    preprocessing: [reorient: RAS, resample: {spacing: 2}, rescale: {in_low: 0.5, in_high: 99.5, percentiles: true}]
    n4: {shrink_factor: 4}                # inserted after reorient when asked (--n4)
    coregister: {transform: rigid}        # several inputs are registered to the first unless `registered`
    inference: {mode: whole, combine: mean, foreground: 1}   # or mode: patches, patch_size, overlap
    postprocessing: [binarise: 0.5, keep_largest, fill_holes]
    outputs: {mask: brain_mask, masked_image: brain, probability: brain_probability, seg: brain_mask_seg,
              segment: brain, qc: qc.png, report: report.json}
    plausibility: {volume_ml: [800, 2200]}

The network's foreground probability is taken back through the inverse spatial steps (linear) onto
each input's own grid, and thresholded there, so every mask lies voxel for voxel on its input.
Everything is written to a staging folder inside OUTPUT_DIR and moved into place at the end: a run
that fails leaves no partial output (only ``report.json`` with the reason, when the model ran).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib.abc import Traversable
from pathlib import Path
from typing import Any

import numpy as np

from medpipes.core.errors import GeometryError, InputError, ProcessingError
from medpipes.core.image import Image, LabelMap
from medpipes.core.report import StepTimes, package_versions, write_report

SPEC_KEYS = (
    "name", "description", "model", "inputs", "preprocessing", "n4", "coregister", "inference",
    "postprocessing", "outputs", "plausibility",
)  # fmt: skip
DEFAULT_OUTPUTS = {
    "mask": "mask",
    "masked_image": None,
    "probability": "probability",
    "seg": "mask_seg",
    "segment": "foreground",
    "qc": "qc.png",
    "report": "report.json",
}
STAGING_PREFIX = ".medpipes-staging-"


@dataclass(frozen=True)
class PipelineSpec:
    """A pipeline's plan, read from its ``pipeline.yaml``; ``folder`` is where relative paths start."""

    name: str
    model: str | None = None
    description: str = ""
    inputs: Mapping[str, Any] = field(default_factory=dict)
    preprocessing: tuple[Any, ...] = ()
    n4: Mapping[str, Any] = field(default_factory=dict)
    coregister: Mapping[str, Any] = field(default_factory=lambda: {"transform": "rigid"})
    inference: Mapping[str, Any] = field(default_factory=lambda: {"mode": "whole"})
    postprocessing: tuple[Any, ...] = ("binarise", "keep_largest", "fill_holes")
    outputs: Mapping[str, Any] = field(default_factory=lambda: dict(DEFAULT_OUTPUTS))
    plausibility: Mapping[str, Any] = field(default_factory=dict)
    folder: Path | None = None

    def output(self, key: str) -> Any:
        """The output name configured under ``outputs.key`` (or the default)."""
        return self.outputs.get(key, DEFAULT_OUTPUTS.get(key))


def parse_pipeline_spec(data: Any, where: str, folder: Path | None = None) -> PipelineSpec:
    """A checked PipelineSpec from a plain dict; unknown keys and wrong shapes name the key and the fix."""
    if not isinstance(data, Mapping):
        raise InputError(f"{where}: expected a mapping with at least 'name', got {type(data).__name__}")
    unknown = sorted(set(data) - set(SPEC_KEYS))
    if unknown:
        raise InputError(f"{where}: unknown key(s) {unknown}; valid keys: {', '.join(SPEC_KEYS)}")
    if not isinstance(data.get("name"), str) or not data["name"]:
        raise InputError(f"{where}: 'name' (the pipeline's name, e.g. brain_extraction) is missing; add it")
    values: dict[str, Any] = {"name": data["name"], "folder": folder}
    for key in ("model", "description"):
        if data.get(key) is not None:
            values[key] = str(data[key])
    for key in ("inputs", "n4", "coregister", "inference", "outputs", "plausibility"):
        if key in data:
            if not isinstance(data[key] or {}, Mapping):
                raise InputError(f"{where}: '{key}' must be a mapping, got {data[key]!r}")
            values[key] = dict(data[key] or {})
    for key in ("preprocessing", "postprocessing"):
        if key in data:
            if not isinstance(data[key] or [], list):
                raise InputError(f"{where}: '{key}' must be a list of steps such as [reorient: RAS], got {data[key]!r}")
            values[key] = tuple(data[key] or ())
    if "outputs" in values:
        bad = sorted(set(values["outputs"]) - set(DEFAULT_OUTPUTS))
        if bad:
            raise InputError(f"{where}: outputs: unknown key(s) {bad}; valid: {', '.join(DEFAULT_OUTPUTS)}")
        values["outputs"] = {**DEFAULT_OUTPUTS, **values["outputs"]}
    mode = values.get("inference", {}).get("mode", "whole")
    if mode not in ("whole", "patches"):
        raise InputError(f"{where}: inference: mode = {mode!r}; use whole or patches")
    if mode == "patches" and "patch_size" not in values["inference"]:
        raise InputError(f"{where}: inference: mode patches needs patch_size, e.g. [96, 96, 96]")
    from medpipes.core.inference.common import PRECISIONS

    precision = values.get("inference", {}).get("precision", "float32")
    if precision not in PRECISIONS:
        raise InputError(f"{where}: inference: precision = {precision!r}; use one of {', '.join(PRECISIONS)}")
    volume = values.get("plausibility", {}).get("volume_ml")
    if volume is not None and (not isinstance(volume, list) or len(volume) != 2 or not volume[0] < volume[1]):
        raise InputError(f"{where}: plausibility: volume_ml must be [low, high] in mL with low < high, got {volume!r}")
    return PipelineSpec(**values)


def load_pipeline_spec(path: str | os.PathLike[str] | Traversable) -> PipelineSpec:
    """Read and check a ``pipeline.yaml`` (a path, or a package resource from importlib.resources)."""
    from medpipes.core.yaml_file import read_yaml

    is_path = isinstance(path, (str, os.PathLike))
    source = Path(path) if is_path else path
    data = read_yaml(source, "pipeline spec")
    folder = Path(str(source)).parent if Path(str(source)).exists() else None
    return parse_pipeline_spec(data, str(source), folder)


# --- model -------------------------------------------------------------------------------------
@dataclass
class LoadedModel:
    """A network ready for inference and where its weights came from."""

    network: Any
    model_id: str
    sha256: str
    source: str
    version: str | None = None


def load_model(model: str | os.PathLike[str], folder: Path | None = None) -> LoadedModel:
    """A manifest model id, or a ``.safetensors`` checkpoint path (its JSON config beside it), as a network."""
    from medpipes.core.models import build_network, load_checkpoint
    from medpipes.core.store import load_manifest, load_state_dict, sha256_file

    text = str(model)
    path = Path(text).expanduser()
    if not path.is_absolute() and folder is not None and (folder / path).is_file():
        path = folder / path
    if text.endswith(".safetensors") or path.is_file():
        network = load_checkpoint(path)
        return LoadedModel(network, path.stem, sha256_file(path), str(path))
    entry = load_manifest().get(text)
    arch = dict(entry.architecture)
    name = arch.pop("name", None) or arch.pop("architecture", None)
    network = build_network({"architecture": name, **arch}, where=f"models_manifest.yaml: {entry.id}: architecture")
    state = load_state_dict(entry.id)
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ProcessingError(
            f"model '{entry.id}': weights do not fit its manifest architecture ({str(exc).splitlines()[0]}); "
            "fix the manifest entry or the weights file"
        ) from None
    network.eval()
    return LoadedModel(network, entry.id, entry.file().sha256, f"manifest {entry.id} {entry.version}", entry.version)


# --- inputs ------------------------------------------------------------------------------------
def input_names(paths: Sequence[Path]) -> list[str]:
    """Each input's name for its outputs: file name without the format suffix (a folder keeps its name)."""
    from medpipes.core.io.formats import suffix_of

    names: list[str] = []
    for path in paths:
        suffix = "" if path.is_dir() else suffix_of(path)
        name = path.name[: -len(suffix)] if suffix and path.name.lower().endswith(suffix) else path.name
        base, n = name, 2
        while name in names:
            name, n = f"{base}_{n}", n + 1
        names.append(name)
    return names


def check_input_image(image: Image, path: Path, rules: Mapping[str, Any]) -> None:
    """InputError (one line) for series this pipeline cannot take: wrong modality, a localizer, too few slices, 4D."""
    want = rules.get("modality")
    have = image.meta.modality
    extra = image.meta.extra or {}
    if want and have and str(have).upper() != str(want).upper():
        raise InputError(
            f"{path}: the series is {have} (DICOM Modality), but this pipeline takes {want}; give a {want} series"
        )
    if "localizer" in (extra.get("flags") or ()):
        raise InputError(f"{path}: the series is a localizer (scout), not a 3D volume; give the 3D {want or ''} series")
    if image.array.ndim == 4 and image.array.shape[3] > 1:
        raise InputError(
            f"{path}: a 4D image ({image.array.shape[3]} volumes); give one 3D volume (e.g. medpipes convert, then pick one)"
        )
    min_slices = int(rules.get("min_slices", 1))
    if min(image.spatial_shape) < min_slices:
        raise InputError(
            f"{path}: shape {list(image.spatial_shape)} has only {min(image.spatial_shape)} slice(s) along one axis; "
            f"this pipeline needs a 3D volume with at least {min_slices} slices along every axis"
        )
    if want and str(want).upper() == "MR" and not have and np.issubdtype(image.dtype, np.number):
        # Without a DICOM Modality, Hounsfield units give a CT away: air at -1000 over much of the field of view
        share_air = float(np.mean(np.asarray(image.array) < -500))
        if share_air > 0.1:
            raise InputError(
                f"{path}: {share_air:.0%} of voxels are below -500, as in CT (Hounsfield units); this pipeline takes MR"
            )


def read_inputs(paths: Sequence[str | os.PathLike[str]], rules: Mapping[str, Any]) -> dict[str, tuple[Path, Image]]:
    """Read and check every input; name -> (path, image), in the order given."""
    from medpipes.core.io import read_image

    if not paths:
        raise InputError("no input given; pass one or more images (DICOM folder or zip, NIfTI, NRRD, MHA)")
    resolved = [Path(p) for p in paths]
    for path in resolved:
        if not path.exists():
            raise InputError(f"{path}: input not found; check the path")
    read: dict[str, tuple[Path, Image]] = {}
    for name, path in zip(input_names(resolved), resolved):
        image = read_image(path)
        if image.array.ndim == 4 and image.array.shape[3] == 1:
            image = image.with_array(np.asarray(image.array)[..., 0])
        check_input_image(image, path, rules)
        read[name] = (path, image)
    return read


# --- the run -----------------------------------------------------------------------------------
@dataclass
class PipelineResult:
    """Paths of the outputs by kind (``mask``, ``masked_image``, ``seg``, ``qc``, ``report``, per-input masks)."""

    outputs: dict[str, Path]
    report: dict[str, Any]

    @property
    def mask(self) -> Path:
        """The first input's mask."""
        return self.outputs["mask"]


class Pipeline:
    """Runs one spec on cases: read, preprocess, infer, invert onto native grids, postprocess, write."""

    def __init__(
        self,
        spec: PipelineSpec,
        model: str | os.PathLike[str] | None = None,
        *,
        network: Any = None,
        device: str = "auto",
        threads: int | None = None,
    ) -> None:
        self.spec = spec
        self.model_name = str(model) if model is not None else spec.model
        self.device_spec = device
        self.threads = threads
        if threads is not None and threads < 1:
            raise InputError(f"--threads {threads}: give a number of CPU threads of at least 1")
        self._given_network = network
        self._loaded: LoadedModel | None = None

    def model(self) -> LoadedModel:
        """The network (loaded once): the one given, else the model named by the spec or the caller."""
        if self._loaded is None:
            if self._given_network is not None:
                self._loaded = LoadedModel(self._given_network, "in-memory", "", "given network")
            elif self.model_name is None:
                raise InputError(f"pipeline {self.spec.name}: no model named; set 'model' in its pipeline.yaml or pass --model")
            else:
                self._loaded = load_model(self.model_name, self.spec.folder)
        return self._loaded

    def build_chain(self, names: Sequence[str], *, n4: bool, registered: bool) -> Any:
        """Co-registration to the first input (several inputs, not ``registered``), then the spec's preprocessing."""
        from medpipes.core.models.train_data import build_preprocessing
        from medpipes.core.processing import Chain, Coregister
        from medpipes.core.processing.bias import N4BiasFieldCorrection

        where = f"pipeline {self.spec.name}"
        chain = build_preprocessing(list(self.spec.preprocessing), where)
        steps = list(chain.steps) if chain is not None else []
        if n4:
            after = next((i + 1 for i, s in enumerate(steps) if type(s).__name__ == "Reorient"), 0)
            steps.insert(after, N4BiasFieldCorrection(**dict(self.spec.n4), name="n4"))
        if len(names) > 1 and not registered:
            steps.insert(0, Coregister(reference=names[0], **dict(self.spec.coregister), name="coregister"))
        return Chain(steps)

    def run(
        self,
        inputs: Sequence[str | os.PathLike[str]],
        output_dir: str | os.PathLike[str],
        *,
        n4: bool = False,
        registered: bool = False,
        probabilities: bool = False,
        save_intermediates: bool = False,
    ) -> PipelineResult:
        """Process one case (one or more co-registrable inputs) and write its outputs into ``output_dir``."""
        output_dir = Path(output_dir)
        if output_dir.exists() and not output_dir.is_dir():
            raise InputError(f"{output_dir}: exists and is not a folder; give an output folder")
        for path in map(Path, inputs):
            if path.is_dir() and output_dir.resolve().is_relative_to(path.resolve()):
                raise InputError(f"{output_dir}: lies inside the input folder {path}; inputs are never modified, choose another")
        output_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=output_dir))
        try:
            result = self._run(inputs, output_dir, staging, n4, registered, probabilities, save_intermediates)
            return result
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _run(
        self,
        inputs: Sequence[str | os.PathLike[str]],
        output_dir: Path,
        staging: Path,
        n4: bool,
        registered: bool,
        probabilities: bool,
        save_intermediates: bool,
    ) -> PipelineResult:
        import torch

        from medpipes.core.models import resolve_device
        from medpipes.core.processing import Chain, ChainRecord

        started = datetime.now(timezone.utc)
        times = StepTimes()
        warnings: list[str] = []
        checks: list[str] = []
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        device = resolve_device(self.device_spec)
        with times.step("read_inputs"):
            read = read_inputs(inputs, self.spec.inputs)
        names = list(read)
        images = {name: image for name, (_, image) in read.items()}
        for name, image in images.items():
            warnings += [f"{name}: {w}" for w in (image.meta.extra or {}).get("warnings", [])]
        if registered and len(names) > 1:
            first = images[names[0]]
            for name in names[1:]:
                if not images[name].same_grid(first):
                    raise GeometryError(
                        f"{read[name][0]}: --registered, but it is not on {read[names[0]][0]}'s grid; drop --registered "
                        "to co-register it"
                    )
            checks.append("registered inputs share the first input's grid")
        with times.step("load_model"):
            loaded = self.model()
            network = loaded.network.to(device).eval()
        chain = self.build_chain(names, n4=n4, registered=registered)
        current: dict[str, Image] = dict(images)
        entries: list[tuple[str, Any]] = []
        for step in chain.steps:  # one step at a time, so each gets its own seconds and memory
            with times.step(f"preprocess:{step.name}"):
                current, record = Chain([step]).run(current)
                entries.extend(record.steps)
        chain_record = ChainRecord(tuple(names), tuple(entries))
        model_grid = current[names[0]]
        for name in names[1:]:
            if not current[name].same_grid(model_grid):
                raise GeometryError(
                    f"{read[name][0]}: after preprocessing it is not on the first input's grid; co-register it "
                    "(drop --registered)"
                )
        with times.step("inference"):
            probability = self._infer(network, [current[n] for n in names], device)
        native: dict[str, Image] = {}
        masks: dict[str, LabelMap] = {}
        with times.step("invert_spatial"):
            for name in names:
                back = chain.invert(probability, chain_record, name)
                if not back.same_grid(images[name]):
                    raise GeometryError(
                        f"{read[name][0]}: the inverted output is not on the input's grid; report this as a bug"
                    )
                native[name] = back
            checks.append("every output lies on its input's native grid (shape and affine)")
        with times.step("postprocess"):
            post = self._postprocess_chain()
            for name in names:
                out, _ = post.run({"mask": native[name]})
                masks[name] = LabelMap(np.asarray(out["mask"].array).astype(np.uint8), images[name].affine, images[name].meta)
        first = names[0]
        mask = masks[first]
        volume_ml = float(np.count_nonzero(mask.array) * float(np.prod(mask.spacing)) / 1000.0)
        failure = self._plausibility(volume_ml, warnings)
        report = self._report(read, loaded, device, times, volume_ml, checks, warnings, started, n4, registered)
        report_name = self.spec.output("report")
        if failure is not None:
            report["status"] = "failed"
            report["error"] = failure
            write_report(report, staging / report_name)
            os.replace(staging / report_name, output_dir / report_name)
            raise ProcessingError(f"{read[first][0]}: {failure}; see {output_dir / report_name}")
        outputs = self._write_outputs(
            staging, read, images, masks, native, probability, current, chain_record, times, checks, warnings,
            probabilities, save_intermediates,
        )  # fmt: skip
        report["steps"] = times.steps
        report["total_seconds"] = times.total_seconds()
        report["geometry_checks_passed"] = checks
        report["outputs"] = {key: path.name for key, path in outputs.items()}
        report["status"] = "ok"
        write_report(report, staging / report_name)
        outputs["report"] = staging / report_name
        return PipelineResult(_move_outputs(outputs, staging, output_dir), report)

    def _infer(self, network: Any, model_inputs: Sequence[Image], device: Any) -> Image:
        """Foreground probability on the model grid: one pass per input, averaged (``combine: mean``) or stacked."""
        from medpipes.core.inference import infer_patches, infer_whole

        settings = dict(self.spec.inference)
        mode = settings.get("mode", "whole")
        combine = settings.get("combine", "mean")
        foreground = int(settings.get("foreground", 1))
        activation = settings.get("activation", "softmax")
        tta = settings.get("tta_flip_axes")
        precision = settings.get("precision", "float32")

        def once(image: Image) -> np.ndarray:
            if mode == "patches":
                result = infer_patches(
                    network, image, settings["patch_size"], overlap=settings.get("overlap", 0.5),
                    activation=activation, tta_flip_axes=tta, device=device, output_device="cpu", precision=precision,
                )  # fmt: skip
            else:
                result = infer_whole(
                    network, image, activation=activation, tta_flip_axes=tta, device=device, output_device="cpu", precision=precision
                )
            return np.asarray(result.array)[..., foreground].astype(np.float32)

        reference = model_inputs[0]
        if combine == "channels":
            stacked = np.stack([np.asarray(i.array, dtype=np.float32) for i in model_inputs], axis=-1)
            return Image(once(reference.with_array(stacked)), reference.affine, reference.meta)
        if combine != "mean":
            raise InputError(f"pipeline {self.spec.name}: inference: combine = {combine!r}; use mean or channels")
        total = np.zeros(reference.spatial_shape, dtype=np.float32)
        for image in model_inputs:
            total += once(image)
        return Image(total / len(model_inputs), reference.affine, reference.meta)

    def _postprocess_chain(self) -> Any:
        from medpipes.core.models.train_data import build_preprocessing

        chain = build_preprocessing(list(self.spec.postprocessing), f"pipeline {self.spec.name}: postprocessing")
        if chain is None:
            raise InputError(f"pipeline {self.spec.name}: postprocessing is empty; it needs at least binarise")
        return chain

    def _plausibility(self, volume_ml: float, warnings: list[str]) -> str | None:
        """The failure message when no usable mask was made; implausible volumes become warnings."""
        if volume_ml == 0.0:
            message = "the mask came out empty (no foreground voxel); no usable mask was made"
            warnings.append(message)
            return message
        bounds = self.spec.plausibility.get("volume_ml")
        if bounds is not None and not bounds[0] <= volume_ml <= bounds[1]:
            warnings.append(
                f"mask volume {volume_ml:.0f} mL is outside the plausible range {bounds[0]}-{bounds[1]} mL; check qc.png"
            )
        return None

    def _report(
        self, read: Mapping[str, tuple[Path, Image]], loaded: LoadedModel, device: Any, times: StepTimes,
        volume_ml: float, checks: list[str], warnings: list[str], started: datetime, n4: bool, registered: bool,
    ) -> dict[str, Any]:  # fmt: skip
        import torch

        from medpipes.core.inference.common import resolve_precision

        return {
            "pipeline": self.spec.name,
            "started_utc": started.isoformat(timespec="seconds"),
            "versions": package_versions(),
            "model": {"id": loaded.model_id, "version": loaded.version, "sha256": loaded.sha256, "source": loaded.source},
            "device": str(device),
            "precision": resolve_precision(self.spec.inference.get("precision", "float32"), torch.device(device)),
            "threads": self.threads,
            "options": {"n4": n4, "registered": registered},
            "inputs": [
                {
                    "name": name,
                    "path": str(path),
                    "modality": image.meta.modality,
                    "series_instance_uid": image.meta.series_instance_uid,
                    "n_source_files": len(image.meta.source_paths),
                    "study_instance_uid": image.meta.study_instance_uid,
                    "shape": list(image.spatial_shape),
                    "spacing_mm": [round(float(s), 6) for s in image.spacing],
                    "orientation": image.orientation,
                }
                for name, (path, image) in read.items()
            ],
            f"{self.spec.output('segment')}_volume_ml": round(volume_ml, 2),
            "volume_ml": round(volume_ml, 2),
            "steps": times.steps,
            "geometry_checks_passed": checks,
            "warnings": warnings,
        }

    def _write_outputs(
        self, staging: Path, read: Mapping[str, tuple[Path, Image]], images: Mapping[str, Image],
        masks: Mapping[str, LabelMap], native: Mapping[str, Image], probability: Image,
        preprocessed: Mapping[str, Image], chain_record: Any, times: StepTimes, checks: list[str],
        warnings: list[str], probabilities: bool, save_intermediates: bool,
    ) -> dict[str, Path]:  # fmt: skip
        """Every output written into ``staging``; each SEG read back and checked before it counts."""
        from medpipes.core.io import write_image
        from medpipes.core.qc import write_qc_png

        names = list(read)
        first = names[0]
        out = self.spec.output
        written: dict[str, Path] = {}
        with times.step("write_outputs"):
            written["mask"] = write_image(masks[first], staging / f"{out('mask')}.nii.gz")
            if len(names) > 1:
                for name in names:
                    written[f"{name}_mask"] = write_image(masks[name], staging / f"{name}_{out('mask')}.nii.gz")
            if out("masked_image"):
                image = images[first]
                inside = np.asarray(masks[first].array) > 0
                kept = np.where(inside, np.asarray(image.array), np.zeros((), dtype=image.dtype)).astype(image.dtype)
                written["masked_image"] = write_image(image.with_array(kept), staging / f"{out('masked_image')}.nii.gz")
            if probabilities:
                written["probability"] = write_image(native[first], staging / f"{out('probability')}.nii.gz")
            if save_intermediates:
                folder = staging / "intermediates"
                folder.mkdir()
                for name, image in preprocessed.items():
                    written[f"{name}_preprocessed"] = write_image(image, folder / f"{name}_preprocessed.nii.gz")
                written["model_grid_probability"] = write_image(probability, folder / "probability_model_grid.nii.gz")
                written["chain_record"] = chain_record.save(folder / "chain_record.json")
        dicom_inputs = [n for n in names if read[n][1].meta.source_paths and read[n][1].meta.series_instance_uid]
        with times.step("write_seg") if dicom_inputs else contextlib.nullcontext():
            for name in dicom_inputs:
                image = read[name][1]
                if (image.meta.extra or {}).get("resampled"):
                    warnings.append(
                        f"{name}: no DICOM SEG: the series was resampled on reading (tilted or irregular slices), so a "
                        "SEG cannot reference its frames; use the NIfTI mask"
                    )
                    continue
                stem = out("seg") if name == first else f"{name}_{out('seg')}"
                key = "seg" if name == first else f"{name}_seg"
                written[key] = self._write_checked_seg(masks[name], image, staging / f"{stem}.dcm")
                checks.append(f"{stem}.dcm read back onto {name}'s grid: every voxel matches")
        with times.step("write_qc"):
            title = f"{self.spec.name}: {first}  ({np.count_nonzero(masks[first].array) * np.prod(masks[first].spacing) / 1000:.0f} mL)"
            written["qc"] = write_qc_png(images[first], masks[first], staging / out("qc"), title=title)
        return written

    def _write_checked_seg(self, mask: LabelMap, image: Image, path: Path) -> Path:
        from medpipes.core.io.dicom import check_seg_against_source, write_seg

        segment = str(self.spec.output("segment"))
        source = seg_source(image.meta.source_paths)
        write_seg(
            mask, source, path, segment_names={1: segment}, allow_empty=False,
            series_description=f"medpipes {self.spec.name}", algorithm_name=f"medpipes {self.spec.name}",
            algorithm_version=self.model().version or self.model().sha256[:12],
        )  # fmt: skip
        check_seg_against_source(path, mask, source, segment_names={1: segment})
        return path


def seg_source(source_paths: Sequence[str]) -> list[Any]:
    """What ``write_seg`` takes as the source series: the files, or their headers when they lie inside a zip."""
    import zipfile

    import pydicom

    archives: dict[Path, zipfile.ZipFile] = {}
    source: list[Any] = []
    try:
        for text in source_paths:
            path = Path(text)
            archive = next((p for p in path.parents if p.suffix.lower() == ".zip" and p.is_file()), None)
            if archive is None:
                source.append(path)
                continue
            if archive not in archives:
                archives[archive] = zipfile.ZipFile(archive)
            with archives[archive].open(path.relative_to(archive).as_posix()) as member:
                source.append(pydicom.dcmread(member, stop_before_pixels=True))
    finally:
        for opened in archives.values():
            opened.close()
    return source


def _move_outputs(outputs: Mapping[str, Path], staging: Path, output_dir: Path) -> dict[str, Path]:
    """Move every staged output into ``output_dir`` (renames within one folder: atomic per file)."""
    moved: dict[str, Path] = {}
    for key, path in outputs.items():
        target = output_dir / path.relative_to(staging)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)
        moved[key] = target
    return moved


def run_pipeline(
    spec: PipelineSpec | str | os.PathLike[str] | Traversable,
    inputs: Sequence[str | os.PathLike[str]],
    output_dir: str | os.PathLike[str],
    *,
    model: str | os.PathLike[str] | None = None,
    device: str = "auto",
    threads: int | None = None,
    n4: bool = False,
    registered: bool = False,
    probabilities: bool = False,
    save_intermediates: bool = False,
) -> PipelineResult:
    """One call: load the spec (if a path), run it on ``inputs``, write into ``output_dir``."""
    if not isinstance(spec, PipelineSpec):
        spec = load_pipeline_spec(spec)
    pipeline = Pipeline(spec, model, device=device, threads=threads)
    return pipeline.run(
        inputs, output_dir, n4=n4, registered=registered, probabilities=probabilities, save_intermediates=save_intermediates
    )


__all__ = [
    "LoadedModel",
    "Pipeline",
    "PipelineResult",
    "PipelineSpec",
    "check_input_image",
    "input_names",
    "load_model",
    "load_pipeline_spec",
    "parse_pipeline_spec",
    "read_inputs",
    "run_pipeline",
    "seg_source",
]
