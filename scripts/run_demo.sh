#!/usr/bin/env bash
# The demo, offline, on the bundled IXI012 head (demo/ixi012_t1_dicom.zip, CC BY-SA 3.0):
# list the DICOM series, convert it to NIfTI, print a one-line summary and check the output.
# `make demo` runs it with the virtualenv's bin folder first on PATH (medpipes and python from .venv).
set -euo pipefail

cd "$(dirname "$0")/.."
input="demo/ixi012_t1_dicom.zip"
output="demo-output/ixi012_t1.nii.gz"

if [[ ! -f "$input" ]]; then
    echo "error: $input is missing; rebuild it with: python scripts/make_demo_dicom.py" >&2
    exit 2
fi
if ! command -v medpipes >/dev/null; then
    echo "error: 'medpipes' is not on PATH; run 'make install' or put .venv/bin first on PATH" >&2
    exit 2
fi

mkdir -p demo-output
rm -f "$output"

echo "== medpipes dicom ls $input"
medpipes dicom ls "$input"

echo "== medpipes convert $input $output"
medpipes convert "$input" "$output"

if [[ ! -s "$output" ]]; then
    echo "error: medpipes convert exited 0 but wrote no $output" >&2
    exit 1
fi

python - "$output" <<'PY'
import sys

from medpipes.core.io import read_image

image = read_image(sys.argv[1])
if sorted(image.shape) != [90, 120, 120] or max(abs(s - 2.0) for s in image.spacing) > 1e-3:
    sys.exit(f"error: {sys.argv[1]} is {image!r}; expected the 90 x 120 x 120 head at 2 mm (all 120 slices)")
spacing = " x ".join(f"{s:.3g}" for s in image.spacing)
print(
    f"demo ok: {sys.argv[1]} shape {image.shape}, spacing {spacing} mm, "
    f"orientation {image.orientation}, values {image.array.min():.4g}..{image.array.max():.4g}"
)
PY
