#!/usr/bin/env bash
# Set everything up and run the tests: system packages the tests need (redis-server, chromium, Node.js
# and npm, strace), the coding-agent CLIs (npm, pinned, into .cache/agent-clis), a virtualenv with
# modelway and its test extra, then ruff, mypy and pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)  # the /ui status page is tested in a real browser
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)  # installs Claude Code and Codex for their e2e tests
command -v strace >/dev/null 2>&1 || missing+=(strace)  # proves those CLIs contact nothing but 127.0.0.1
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]} (Debian packages)"
  sudo_cmd=""
  [ "$(id -u)" = 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Claude Code and Codex at the versions of tests/agent_clis/package-lock.json (a no-op when installed);
# without npm (exit 3) their tests skip and say why.
bash scripts/install-agent-clis.sh || { status=$?; [ "$status" = 3 ] || exit "$status"; }

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null 2>&1 || true
log=$(mktemp)
if ! .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]' >"$log" 2>&1; then
  grep -v '^WARNING: Location' "$log" >&2
  echo "pip install failed" >&2
  exit 1
fi
rm -f "$log"

.venv/bin/ruff check modelway tests examples benchmarks
.venv/bin/mypy modelway
.venv/bin/pytest -q tests "$@"
