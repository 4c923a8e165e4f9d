#!/usr/bin/env bash
# The first command of the README: install what is missing, build, and run
# `pglab up --demo` (extra arguments are passed to `pglab up`).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo build --release --quiet
exec ./target/release/pglab up --demo "$@"
