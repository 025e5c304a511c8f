#!/usr/bin/env bash
# Lay out the training data for a run: DEST/train (T91, BSDS500-train, wallpapers, BSDS500-test less the
# held-out images), DEST/val/HR (10 BSDS500-test images, every 20th by name: model selection only, never
# trained on, and disjoint from the reported test sets Set5/Set14/BSD100) and DEST/Set5.
# Usage: scripts/prepare_data.sh [DEST=.gpu_data] [SHARED=../shared/data]
set -euo pipefail
dest=${1:-.gpu_data}
shared=${2:-../shared/data}
[ -d "$shared/train" ] || { echo "prepare_data: no training data at $shared/train" >&2; exit 1; }
rm -rf "$dest"
mkdir -p "$dest/train/BSDS500-test" "$dest/val/HR" "$dest/Set5"
cp -r "$shared/train/T91" "$shared/train/BSDS500-train" "$shared/train/wallpapers" "$dest/train/"
i=0
for f in $(ls "$shared/train/BSDS500-test" | sort); do
  if [ $((i % 20)) -eq 0 ]; then cp "$shared/train/BSDS500-test/$f" "$dest/val/HR/"; else cp "$shared/train/BSDS500-test/$f" "$dest/train/BSDS500-test/"; fi
  i=$((i + 1))
done
cp -r "$shared/benchmark/Set5/HR" "$shared/benchmark/Set5/LR_bicubic_symmetric" "$dest/Set5/"
echo "prepare_data: $(find "$dest/train" -type f | wc -l) training images, $(ls "$dest/val/HR" | wc -l) held out, in $dest ($(du -sh "$dest" | cut -f1))"
