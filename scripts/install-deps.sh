#!/usr/bin/env bash
# Installs the Debian packages pglab needs, only those that are missing.
# Usage: scripts/install-deps.sh [--test]   (--test adds what the tests use)
set -euo pipefail

packages=(slapd ldap-utils prometheus prometheus-sql-exporter)
# PostgreSQL server and client tools (Debian 12 ships 15).
if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
  packages+=(postgresql)
fi
if [ "${1:-}" = "--test" ]; then
  packages+=(postgresql-client chromium chromium-driver haproxy)
  command -v npm >/dev/null 2>&1 || packages+=(nodejs npm)
  # The API's Java example runs with `java File.java` (Java 17).
  command -v java >/dev/null 2>&1 || packages+=(default-jdk-headless)
  command -v python3 >/dev/null 2>&1 || packages+=(python3 python3-venv)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: everything is installed"
  exit 0
fi

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "install-deps: installing ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: done"
