#!/usr/bin/env bash
# VNN-COMP tool contract: install_tool.sh v1
# Builds nncert (release). Needs only the Rust toolchain; links COIN-OR CBC for
# `--engine milp --milp-solver cbc` when Debian's coinor-libcbc-dev is installed.
set -euo pipefail
VERSION=${1:-v1}
[ "$VERSION" = v1 ] || { echo "install_tool.sh: expected version v1, got '$VERSION'" >&2; exit 1; }
cd "$(dirname "$0")/.."
FEATURES=()
if dpkg -s coinor-libcbc-dev >/dev/null 2>&1; then
  FEATURES=(--features cbc)
fi
cargo build --release -p nncert-cli "${FEATURES[@]}"
