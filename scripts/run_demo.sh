#!/usr/bin/env bash
# The demo, offline, on the bundled IXI012 head (demo/ixi012_t1_dicom.zip, CC BY-SA 3.0):
# list the DICOM series, convert it to NIfTI, then run the brain-extraction pipeline on the DICOM zip
# (mask, skull-stripped head, DICOM SEG, qc.png, report.json) and say where the outputs are.
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

masks="demo-output/brain_extraction"
rm -rf "$masks"
echo "== medpipes-brain-extraction $input $masks"
medpipes-brain-extraction "$input" "$masks" --device auto
for f in brain_mask.nii.gz brain.nii.gz brain_mask_seg.dcm qc.png report.json; do
    if [[ ! -s "$masks/$f" ]]; then
        echo "error: medpipes-brain-extraction exited 0 but wrote no $masks/$f" >&2
        exit 1
    fi
done
python - "$masks/report.json" <<'PY'
import json
import sys

report = json.load(open(sys.argv[1]))
volume = report.get("brain_volume_ml")
print(f"demo ok: brain mask, skull-stripped head, DICOM SEG, qc.png and report.json in {sys.argv[1].rsplit('/', 1)[0]}/"
      + (f" (brain volume {volume:.0f} mL)" if isinstance(volume, (int, float)) else ""))
PY
