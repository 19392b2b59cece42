#!/usr/bin/env bash
# VNN-COMP tool contract: install_tool.sh v1
# Builds nncert (release). Needs only the Rust toolchain.
set -euo pipefail
VERSION=${1:-v1}
[ "$VERSION" = v1 ] || { echo "install_tool.sh: expected version v1, got '$VERSION'" >&2; exit 1; }
cd "$(dirname "$0")/.."
cargo build --release -p nncert-cli
