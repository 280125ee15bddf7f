#!/usr/bin/env bash
# Install what the browser test (tests/browser) needs: Debian's Chromium and the Playwright
# Python package. Playwright bundles its own driver; no browser is downloaded, the test drives
# /usr/bin/chromium. Safe to run again: installs only what is missing.
set -euo pipefail

if [ ! -x /usr/bin/chromium ]; then
    sudo_cmd=""
    if [ "$(id -u)" -ne 0 ]; then sudo_cmd="sudo"; fi
    $sudo_cmd apt-get update
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y chromium
fi

if ! python3 -c "import playwright" 2>/dev/null; then
    python3 -m pip install playwright
fi

/usr/bin/chromium --version
python3 -c "from importlib.metadata import version; print('playwright', version('playwright'))"
