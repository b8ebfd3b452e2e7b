#!/usr/bin/env bash
# Sets up a fresh machine for berth: Debian packages, the virtual environment,
# generated code (validator, gRPC stubs) and the fast launchers. Idempotent.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"

APT_PACKAGES="busybox-static nftables iproute2 runc crun skopeo docker-registry libseccomp2 hyperfine umoci openssl containerd"
missing=""
for p in $APT_PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
done
if [ -n "$missing" ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "setup: need root to install Debian packages:$missing" >&2
        exit 1
    fi
    echo "setup: installing$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

# The venv's interpreter starts every lowrun and monitor process. Debian's python3.11 is
# linked statically and starts in ~6 ms with -S, pyenv's (shared libpython) in ~8 ms.
if [ -z "${PYTHON:-}" ]; then
    if [ -x /usr/bin/python3.11 ] && /usr/bin/python3.11 -c 'import ensurepip, venv' 2>/dev/null; then
        PYTHON=/usr/bin/python3.11
    else
        PYTHON=python3
    fi
fi
base=$("$PYTHON" -c 'import sys; print(sys.base_prefix)')
if [ -f .venv/pyvenv.cfg ] && ! grep -q "^home = $base/bin\$" .venv/pyvenv.cfg; then
    echo "setup: recreating .venv on $PYTHON"
    rm -rf .venv
fi
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
stamp=.venv/.berth-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e '.[dev,shim]'
    touch "$stamp"
fi

.venv/bin/python scripts/generate.py
.venv/bin/python scripts/launchers.py
