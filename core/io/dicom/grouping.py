"""Splitting frames into series: by SeriesInstanceUID, then orientation, matrix, echo and image type;
naming each part with the id `medpipes dicom ls` shows ("7", "7-e2", "7-ph", "7-2")."""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from medpipes.core.io.dicom.records import Frame

IOP_TOL = 1e-3
LOCALIZER_MAX_SLICES = 5


@dataclass
class Group:
    """Frames that make one image (before geometry planning), with their id and why they were split."""

    id: str
    series_uid: str
    frames: list[Frame]
    localizer: bool = False
    multi_echo: bool = False


def _echo_key(frame: Frame) -> tuple:
    if frame.echo_number is not None and frame.file.is_multiframe is False:
        return (0, frame.echo_number)
    if frame.echo_time is not None:
        return (1, round(frame.echo_time, 2))
    return (2, frame.echo_number or 0)


def _is_phase(image_type: str) -> bool:
    tokens = set(image_type.split("\\"))
    return bool(tokens & {"P", "PHASE", "PHASE MAP"})


def _is_magnitude(image_type: str) -> bool:
    tokens = set(image_type.split("\\"))
    return bool(tokens & {"M", "MAGNITUDE"})


def _split_uid(frames: list[Frame]) -> list[tuple[tuple, list[Frame]]]:
    """Sub-groups of one SeriesInstanceUID keyed by (orientation, matrix, spacing, echo, image type)."""
    orientations: list[np.ndarray] = []
    parts: dict[tuple, list[Frame]] = defaultdict(list)
    for f in frames:
        for o_idx, o in enumerate(orientations):
            if np.max(np.abs(o - f.iop)) < IOP_TOL:
                break
        else:
            orientations.append(f.iop)
            o_idx = len(orientations) - 1
        spacing = (round(f.pixel_spacing[0], 4), round(f.pixel_spacing[1], 4))
        key = (o_idx, f.rows, f.cols, spacing, _echo_key(f), f.image_type)
        parts[key].append(f)
    return list(parts.items())


def _n_positions(frames: list[Frame]) -> int:
    normal = frames[0].normal
    return len({round(float(f.ipp @ normal), 2) for f in frames})


def _natural(text: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def group_frames(frames: list[Frame]) -> list[Group]:
    """All groups of ``frames`` with unique ids (order: series number, then id)."""
    # SeriesInstanceUID and SeriesNumber together name a series (as dcm2niix: one UID may carry
    # several series numbers when files were re-numbered, e.g. dcm_qa_ts).
    by_uid: dict[tuple[str, int | None], list[Frame]] = defaultdict(list)
    for f in frames:
        by_uid[(f.file.series_uid, f.file.series_number)].append(f)
    used_bases: dict[str, str] = {}  # base id -> uid that owns it
    groups: list[Group] = []
    uid_order = sorted(
        by_uid,
        key=lambda u: (
            by_uid[u][0].file.series_number if by_uid[u][0].file.series_number is not None else 1 << 40,
            min(str(f.file.source.path) for f in by_uid[u]),
        ),
    )
    for uid_key in uid_order:
        uid = uid_key[0]
        uid_frames = by_uid[uid_key]
        sn = uid_frames[0].file.series_number
        base = str(sn) if sn is not None else uid.split(".")[-1][-8:]
        if base in used_bases:
            n = 2
            while f"{base}-u{n}" in used_bases:
                n += 1
            base = f"{base}-u{n}"
        used_bases[base] = uid
        parts = _split_uid(uid_frames)
        n_orient = len({k[0] for k, _ in parts})
        echoes = {k[4] for k, _ in parts}
        localizer_uid = n_orient >= 2 and all(_n_positions(p) <= LOCALIZER_MAX_SLICES for _, p in parts)
        parts.sort(
            key=lambda kp: (
                any(f.is_localizer for f in kp[1]),
                kp[0][0],
                not _is_magnitude(kp[0][5]),
                kp[0][4],
                _is_phase(kp[0][5]),
                -len(kp[1]),
                kp[0][5],
            )
        )
        first_key = parts[0][0]
        echo_rank: dict[tuple, int] = {}
        for key, _ in parts:
            echo_rank.setdefault(key[4], len(echo_rank) + 1)
        taken: set[str] = set()
        for n, (key, part) in enumerate(parts):
            if n == 0:
                gid = base
            elif key[4] != first_key[4] and key[:4] == first_key[:4]:
                echo_no = part[0].echo_number if part[0].echo_number and not part[0].file.is_multiframe else None
                gid = f"{base}-e{echo_no}" if echo_no else f"{base}-e{echo_rank[key[4]]}"
            elif key[5] != first_key[5] and _is_phase(key[5]) and not _is_phase(first_key[5]):
                gid = f"{base}-ph"
            else:
                gid = f"{base}-{n + 1}"
            while gid in taken:
                gid = f"{gid}-{n + 1}"
            taken.add(gid)
            groups.append(
                Group(
                    id=gid,
                    series_uid=uid,
                    frames=part,
                    localizer=localizer_uid or any(f.is_localizer for f in part),
                    multi_echo=len(echoes) > 1,
                )
            )
    return groups


def split_by_acquisition(group: Group) -> list[Group]:
    """The group split by AcquisitionNumber (when repeated positions do not make whole volumes)."""
    parts: dict[int | None, list[Frame]] = defaultdict(list)
    for f in group.frames:
        parts[f.acquisition].append(f)
    if len(parts) < 2:
        return [group]
    keys = sorted(parts, key=lambda a: (a is None, a if a is not None else 0))
    return [
        Group(
            id=group.id if i == 0 else f"{group.id}-a{a}",
            series_uid=group.series_uid,
            frames=parts[a],
            localizer=group.localizer,
            multi_echo=group.multi_echo,
        )
        for i, a in enumerate(keys)
    ]


def natural_key(text: str) -> list:
    """Sort key that orders "7-e2" after "7" and "10" after "9"."""
    return _natural(text)
