#!/usr/bin/env bash
# The main job, end to end: build a busybox bundle from Debian's busybox-static, write
# lowrun's default config.json into it, and run it with lowrun. Needs root and `make setup`.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
lowrun="$here/.venv/bin/lowrun"
python="$here/.venv/bin/python"

bundle=$(mktemp -d /tmp/berth-demo.XXXXXX)
state=$(mktemp -d /tmp/berth-demo-state.XXXXXX)
trap 'rm -rf "$bundle" "$state"' EXIT

mkdir -p "$bundle/rootfs"/{bin,dev,proc,sys,tmp,etc,root}
cp /bin/busybox "$bundle/rootfs/bin/busybox"
for applet in $(/bin/busybox --list); do
    [ -e "$bundle/rootfs/bin/$applet" ] || ln -s busybox "$bundle/rootfs/bin/$applet"
done
echo "root:x:0:0:root:/root:/bin/sh" > "$bundle/rootfs/etc/passwd"

(cd "$bundle" && "$lowrun" spec)
"$python" - "$bundle/config.json" <<'PY'
import json, sys
path = sys.argv[1]
config = json.load(open(path))
config["process"]["terminal"] = False
config["process"]["args"] = ["sh", "-c",
    "echo \"hello from PID $$ in $(hostname)\"; id; echo 'mounts:'; "
    "cut -d' ' -f2,3 /proc/self/mounts | head -8; grep Cap /proc/self/status"]
json.dump(config, open(path, "w"), indent=2)
PY

echo "+ lowrun run --bundle $bundle demo"
"$lowrun" --root "$state" run --bundle "$bundle" "demo-$$"
