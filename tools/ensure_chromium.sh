#!/usr/bin/env bash
# The admin UI's browser test drives Debian's Chromium (Playwright's own browsers are never
# downloaded). Install it when this machine lets us (root, or sudo without a password);
# otherwise say the one command to run and stop.
set -euo pipefail
CHROMIUM="${OJS_CHROMIUM:-/usr/bin/chromium}"
[ -x "$CHROMIUM" ] && exit 0
if command -v apt-get >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ]; then
    apt-get update -qq && apt-get install -y -qq chromium >/dev/null && exit 0
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo -n apt-get update -qq && sudo -n apt-get install -y -qq chromium >/dev/null && exit 0
  fi
fi
echo "The admin UI test needs Chromium at $CHROMIUM. Install it with:" >&2
echo "  sudo apt-get install -y chromium" >&2
exit 1
