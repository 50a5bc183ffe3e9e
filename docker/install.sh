#!/bin/sh
# Install fabricad from the build stage's wheel into the image's Python; shared by both targets.
#   install.sh cpu | gpu
set -eu
variant="$1"
# postgres: the compose deployment's database; line: OPC UA and Modbus to the PLC
extras="postgres,line"
[ "$variant" = gpu ] && extras="postgres,line,gpu"
# No [train] extra: the service runs bundles with ONNX Runtime and never imports PyTorch, so
# neither it nor SciPy, scikit-learn or matplotlib goes in; models are trained and exported on a
# workstation and mounted at /data/models.
pip install --no-cache-dir "$(ls /wheels/fabricad-*.whl)[$extras]"
if [ "$variant" = gpu ]; then
  # onnxruntime and onnxruntime-gpu share one module name: keep only the GPU build.
  pip uninstall -y onnxruntime
  pip install --no-cache-dir --force-reinstall --no-deps "onnxruntime-gpu>=1.18"
fi
# Unicode fonts for the roll reports (article names in Turkish, Chinese, Cyrillic, …)
apt-get update
apt-get install -y --no-install-recommends fonts-dejavu-core fonts-wqy-microhei
rm -rf /var/lib/apt/lists/*
useradd --system --uid 10001 --create-home fabricad
mkdir -p /data/models /data/store /data/media
chown -R 10001 /data
