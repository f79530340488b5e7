#!/usr/bin/env bash
# Install the coding-agent CLIs that tests/e2e/test_claude_code.py and test_codex.py drive through the
# gateway (Claude Code and Codex), at the versions pinned in tests/agent_clis/package-lock.json, into
# .cache/agent-clis (project-local, gitignored; about 650 MB, as both ship a native binary inside a
# platform package). Does nothing when that lockfile is already installed there.
# Exit status: 0 installed (or already there), 3 no npm on this machine, anything else: npm failed.
set -euo pipefail
cd "$(dirname "$0")/.."

src=tests/agent_clis
dest=.cache/agent-clis
stamp="$dest/.installed"

if ! command -v npm >/dev/null 2>&1; then
  echo "install-agent-clis: npm is not on PATH (install Node.js and npm, e.g. the Debian packages nodejs and npm)" >&2
  exit 3
fi

if [ -f "$stamp" ] && cmp -s "$src/package-lock.json" "$stamp" \
  && [ -x "$dest/node_modules/.bin/claude" ] && [ -x "$dest/node_modules/.bin/codex" ]; then
  exit 0
fi

echo "installing the agent CLIs of $src/package.json into $dest (npm ci)"
mkdir -p "$dest"
rm -f "$stamp"
cp "$src/package.json" "$src/package-lock.json" "$dest/"
(cd "$dest" && npm ci --no-audit --no-fund --loglevel=error)

# Claude Code's postinstall puts its native binary in place of a stub; npm versions or settings that skip
# install scripts leave the stub, so run it here when the binary does not answer.
if ! "$dest/node_modules/.bin/claude" --version >/dev/null 2>&1; then
  (cd "$dest" && node node_modules/@anthropic-ai/claude-code/install.cjs)
fi
"$dest/node_modules/.bin/claude" --version
"$dest/node_modules/.bin/codex" --version
cp "$src/package-lock.json" "$stamp"
