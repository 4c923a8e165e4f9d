#!/usr/bin/env bash
# The second command of the README: install what is missing and run the
# whole test suite (unit tests, and integration tests that start real slapd,
# Postgres and Prometheus on free loopback ports).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --test
# JSON schemas of Grafana dashboards and of the Compose specification.
npm ci --prefix tests/schema --no-audit --no-fund --loglevel=error
cargo test --no-fail-fast
