#!/usr/bin/env bash
# The test command: sets up what the tests need, then runs them. Idempotent; quiet when all is there.
#   scripts/test.sh [pytest arguments]     (default: the whole suite on 2 processes)
# Needs: python3 (>= 3.11), Debian's chromium and chromium-driver (installed with apt-get when missing
# and this user may), PostgreSQL at 127.0.0.1:5432 (or LRPO_PG_URL), Fashion-MNIST and Tiny Shakespeare
# under LRPO_DATA_DIR (default: ../shared/data beside the checkout).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "scripts/test.sh: $*" >&2; }

missing_browser() {
  local need=()
  command -v chromium >/dev/null 2>&1 || need+=(chromium)
  command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
  echo "${need[@]}"
}

need=$(missing_browser)
if [ -n "$need" ]; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ]; then
    say "installing Debian packages for the browser tests: $need"
    # shellcheck disable=SC2086  # one word per package
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need; } >/dev/null 2>&1 || true
  elif command -v apt-get >/dev/null 2>&1 && command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    say "installing Debian packages for the browser tests: $need"
    # shellcheck disable=SC2086
    { sudo -n apt-get update -qq && sudo -n DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need; } >/dev/null 2>&1 || true
  fi
  need=$(missing_browser)
  if [ -n "$need" ]; then
    say "the browser tests need the Debian packages: $need; install them with: sudo apt-get install $need"
    exit 2
  fi
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]'

set +e
.venv/bin/python -m pytest -q -n 2 "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  say "pytest collected no tests: that is a failure"
  exit 1
fi
exit "$rc"
