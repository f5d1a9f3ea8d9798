"""Slice geometry of one series: order frames by position along the slice normal, find repeats (4D),
gantry tilt, uneven spacing and missing slices, and build the voxel-to-RAS affine (DICOM is LPS)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from medpipes.core.io.dicom.records import Frame

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
POSITION_TOL_MM = 0.01  # two frames closer than this along the normal share one slice position
TILT_MIN_DEG = 0.1  # below this a shear is kept in the affine (exact world geometry, no resampling)
MISSING_FACTOR = 1.5  # a gap larger than this times the usual step means a missing slice


@dataclass
class GeometryPlan:
    """How one series' frames become a (x, y, z[, t]) grid, and what had to be corrected."""

    order: list[list[Frame]]  # [slice][volume], slices ascending along the normal
    affine: np.ndarray  # RAS affine of the output grid
    spacing: tuple[float, float, float]
    n_slices: int
    n_volumes: int
    flags: set[str] = field(default_factory=set)
    warnings: list[str] = field(default_factory=list)
    tilt_deg: float | None = None
    irregular: str | None = None  # "uneven" / "missing" description, when spacing is irregular
    problem: str | None = None  # why the frames do not make one image (not a candidate)
    # Resampling onto an orthogonal regular grid (tilt and/or irregular spacing):
    inplane_shift: np.ndarray | None = None  # (n_slices, 2) shift in voxels (i, j) per source slice
    source_z: np.ndarray | None = None  # source slice positions along the normal (mm, from slice 0)
    target_z: np.ndarray | None = None  # output slice positions along the normal (mm, from slice 0)

    @property
    def needs_resampling(self) -> bool:
        return self.inplane_shift is not None or self.target_z is not None


def volume_order_key(frame: Frame) -> tuple:
    """Order of repeated frames at one position: acquisition, temporal index, time, instance."""
    big = float("inf")
    return (
        frame.acquisition if frame.acquisition is not None else big,
        frame.temporal if frame.temporal is not None else big,
        frame.time if frame.time is not None else big,
        frame.instance if frame.instance is not None else big,
        str(frame.file.source.path),
        frame.index,
    )


def _fmt(values: np.ndarray | list[float]) -> str:
    return ", ".join(f"{v:.3g}" for v in values)


def plan_geometry(frames: list[Frame]) -> GeometryPlan:
    """Sort ``frames`` (one orientation and matrix) into slices and volumes and derive the grid."""
    ref = frames[0]
    row_cos, col_cos = ref.iop[:3], ref.iop[3:]
    normal = np.cross(row_cos, col_cos)
    normal /= np.linalg.norm(normal)
    dy, dx = ref.pixel_spacing
    dist = np.array([f.ipp @ normal for f in frames])
    order_idx = np.argsort(dist, kind="stable")
    clusters: list[list[int]] = []
    last = None
    for idx in order_idx:
        if last is None or dist[idx] - last > POSITION_TOL_MM:
            clusters.append([idx])
            last = dist[idx]
        else:
            clusters[-1].append(idx)
    order = [sorted((frames[i] for i in c), key=volume_order_key) for c in clusters]
    counts = {len(c) for c in order}
    n_slices = len(order)
    n_volumes = max(counts)
    plan_flags: set[str] = set()
    problem = None
    if len(counts) > 1:
        problem = (
            f"slice positions repeat unevenly ({min(counts)} to {max(counts)} frames per position): "
            "volumes are incomplete or several acquisitions are mixed"
        )
    if n_volumes > 1:
        plan_flags.add("4d")
    if n_slices == 1:
        plan_flags.add("single-slice")
    positions = np.array([c[0].ipp for c in order])  # (n, 3) LPS
    z = (positions - positions[0]) @ normal
    inplane = positions - positions[0] - np.outer(z, normal)
    shift_ij = np.stack([inplane @ row_cos / dx, inplane @ col_cos / dy], axis=1)
    warnings_: list[str] = []
    tilt_deg = None
    inplane_shift = None
    source_z = target_z = None
    irregular = None
    if n_slices > 1:
        steps = np.diff(z)
        usual = float(np.median(steps))
        drift = np.linalg.norm(inplane[-1]) / max(z[-1], 1e-9)
        angle = float(np.degrees(np.arctan(drift)))
        if angle > TILT_MIN_DEG:
            tilt_deg = angle
            plan_flags.add("tilt")
            inplane_shift = shift_ij
            warnings_.append(
                f"gantry tilt of {angle:.2f} degrees (slice positions are not along the slice normal): "
                "resampled onto an orthogonal grid"
            )
        tol = max(0.005, 0.01 * usual)
        missing = steps > MISSING_FACTOR * usual
        uneven = np.abs(steps - usual) > tol
        if missing.any():
            plan_flags.add("missing")
            gaps = [f"{z[i] + positions[0] @ normal:.2f} to {z[i + 1] + positions[0] @ normal:.2f} mm" for i in np.flatnonzero(missing)]
            irregular = (
                f"missing slice(s): gap of {_fmt(steps[missing])} mm where the usual step is {usual:.3g} mm "
                f"(between positions {'; '.join(gaps)} along the normal)"
            )
        elif uneven.any():
            plan_flags.add("uneven")
            irregular = f"uneven slice spacing: steps of {_fmt(np.unique(np.round(steps, 3)))} mm along the normal"
        if irregular:
            step = float(steps.min())
            n_out = int(np.floor(z[-1] / step + 1e-6)) + 1
            source_z, target_z = z, np.arange(n_out) * step
            warnings_.append(f"{irregular}: resampled to {step:.3g} mm ({n_out} slices, linear along the slice axis)")
    lps = np.eye(4)
    lps[:3, 0] = row_cos * dx
    lps[:3, 1] = col_cos * dy
    lps[:3, 3] = positions[0]
    if n_slices == 1:
        dz = ref.spacing_hint or 1.0
        lps[:3, 2] = normal * dz
    elif inplane_shift is not None or target_z is not None:
        dz = float(target_z[1] - target_z[0]) if target_z is not None and len(target_z) > 1 else float(z[-1] / (n_slices - 1))
        lps[:3, 2] = normal * dz
    else:
        # As dcm2niix: the step between the first two slices in acquisition (InstanceNumber) order,
        # anchored at the first one (headers round positions; the mean step can differ by 0.01 mm).
        first_inst, last_inst = order[0][0].instance, order[-1][0].instance
        if first_inst is not None and last_inst is not None and last_inst < first_inst:
            step_vec = positions[-1] - positions[-2]
            lps[:3, 3] = positions[-1] - (n_slices - 1) * step_vec
        else:
            step_vec = positions[1] - positions[0]
        lps[:3, 2] = step_vec
        dz = float(np.linalg.norm(lps[:3, 2]))
    return GeometryPlan(
        order=order,
        affine=LPS_TO_RAS @ lps,
        spacing=(float(dx), float(dy), float(dz)),
        n_slices=n_slices if target_z is None else len(target_z),
        n_volumes=n_volumes,
        flags=plan_flags,
        warnings=warnings_,
        tilt_deg=tilt_deg,
        irregular=irregular,
        problem=problem,
        inplane_shift=inplane_shift,
        source_z=source_z,
        target_z=target_z,
    )


def resample_stack(stack: np.ndarray, plan: GeometryPlan) -> np.ndarray:
    """Move each source slice onto the orthogonal grid (tilt) and onto regular positions (irregular)."""
    from scipy import ndimage  # linear in-plane shifts: scipy's tested interpolation, not hand-written

    out = stack.astype(np.float32) if stack.dtype.kind in "iu" else stack.copy()
    if plan.inplane_shift is not None:
        for k, (si, sj) in enumerate(plan.inplane_shift):
            if abs(si) < 1e-6 and abs(sj) < 1e-6:
                continue
            for t in range(out.shape[3] if out.ndim == 4 else 1):
                sl = (slice(None), slice(None), k) + ((t,) if out.ndim == 4 else ())
                out[sl] = ndimage.shift(out[sl], (si, sj), order=1, mode="constant", cval=0.0)
    if plan.target_z is not None and plan.source_z is not None:
        src = plan.source_z
        idx = np.clip(np.searchsorted(src, plan.target_z, side="right") - 1, 0, len(src) - 2)
        w = ((plan.target_z - src[idx]) / (src[idx + 1] - src[idx])).astype(np.float32)
        lo, hi = out[:, :, idx], out[:, :, idx + 1]
        shape = (1, 1, -1) + ((1,) if out.ndim == 4 else ())
        out = lo * (1 - w.reshape(shape)) + hi * w.reshape(shape)
    if stack.dtype.kind in "iu":
        info = np.iinfo(stack.dtype)
        return np.clip(np.rint(out), info.min, info.max).astype(stack.dtype)
    return out.astype(stack.dtype, copy=False)
