#!/usr/bin/env bash
# Installs what the tests need (Graphviz, a CJK font, the package with its test extras), then runs
# lint, types and the whole test suite. Used by the README's test command and by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v dot >/dev/null 2>&1 || ! fc-list 2>/dev/null | grep -qi "wenquanyi\|wqy"; then
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" = "0" ] || SUDO="sudo"
    $SUDO apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq graphviz fonts-wqy-zenhei >/dev/null
  fi
fi
python3 -m pip install -q -e '.[test]'
python3 -m ruff check flowengine tests benchmarks examples
python3 -m mypy
lint-imports
# The benchmark at a small size, so it cannot rot (no thresholds: machines are noisy).
python3 benchmarks/run.py --quick --db "$( [ "${CI:-}" = "true" ] && echo both || echo sqlite )" > /tmp/flowengine-bench.txt \
  || { cat /tmp/flowengine-bench.txt; exit 1; }
tail -n 1 /tmp/flowengine-bench.txt
python3 -m pytest -q "$@"
