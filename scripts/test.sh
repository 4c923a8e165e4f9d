#!/usr/bin/env bash
# The second command of the README: install what is missing and run the
# whole test suite (unit tests, and integration tests that start real slapd,
# Postgres and Prometheus on free loopback ports).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --test
# JSON schemas of Grafana dashboards and of the Compose specification, and
# the OpenAPI linter (@redocly/cli).
npm ci --prefix tests/schema --no-audit --no-fund --loglevel=error
# Python tools of the tests, in their own venv (PyPI): schemathesis for the
# API's property-based tests, aiosmtpd for the SMTP server of the mail tests.
if ! target/pytools/bin/st --version 2>/dev/null | grep -q "4.32.5" \
  || ! target/pytools/bin/python -c "import aiosmtpd" 2>/dev/null; then
  python3 -m venv target/pytools
  target/pytools/bin/pip install --quiet --disable-pip-version-check schemathesis==4.32.5 aiosmtpd==1.4.6
fi
cargo test --no-fail-fast
