#!/usr/bin/env bash
# Installs what deepseek needs to build and test (Debian 12 packages, PyPI). Idempotent.
set -euo pipefail

APT_PACKAGES=(cmake ninja-build g++ ccache pkg-config libdnnl-dev libopenblas-dev zlib1g-dev
  nlohmann-json3-dev libcpp-httplib-dev libgtest-dev libbenchmark-dev dataset-fashion-mnist
  llvm-16-dev python3-torch)
PIP_PACKAGES=(nanobind scikit-build-core numpy pytest safetensors tensorboard)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
need_pip=()
for p in "${PIP_PACKAGES[@]}"; do
  mod=${p//-/_}
  [ "$mod" = scikit_build_core ] && mod=scikit_build_core
  "$PY" -c "import $mod" 2>/dev/null || need_pip+=("$p")
done
if ((${#need_pip[@]})); then
  "$PY" -m pip install -q --disable-pip-version-check "${need_pip[@]}"
fi
# cuDNN's header-only graph frontend (the CUDA backend's fused attention); its Python
# dependencies are not needed for the headers.
if ! "$PY" -c "import importlib.util as u; assert u.find_spec('cudnn')" 2>/dev/null; then
  "$PY" -m pip install -q --disable-pip-version-check --no-deps nvidia-cudnn-frontend==1.32.0
fi
