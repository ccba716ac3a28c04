#!/bin/sh
# Creates the project-local venv .venv/ with the PyPI torch wheel whose
# libtorch tch expects (tch =0.24.0 <-> torch 2.11.0). Idempotent.
set -eu
TORCH_VERSION=2.11.0
VENV=${1:-.venv}
PY=${PYTHON:-python3}
have=$("$VENV/bin/python" -c 'import torch.version as v; print(v.__version__.split("+")[0])' 2>/dev/null || true)
[ "$have" = "$TORCH_VERSION" ] && exit 0
echo "[sedr] installing torch==$TORCH_VERSION into $VENV (once; about 4 GB with its CUDA libraries)"
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check "torch==$TORCH_VERSION"
