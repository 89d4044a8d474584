#!/usr/bin/env bash
# The main job: sets up, builds, and trains the Fashion-MNIST CNN with `ds train`.
# Extra arguments go to `ds train` (e.g. --epochs 2).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh build
./build/ds info
./build/ds train "$@"
