"""A fake OCI runtime for the monitor's unit tests: runc's command line, no isolation.

`create` forks the process of config.json, blocked on a fifo until `start`; `exec
--detach` forks the process of --process; `kill` signals; `delete` forgets. The
processes are plain children that the runtime leaves to its caller (the monitor, a
subreaper), as runc does. No root and no kernel features needed.
"""

from __future__ import annotations

import json
import os
import signal
import sys


def _take(args: list[str], flag: str) -> str | None:
    if flag in args:
        i = args.index(flag)
        value = args[i + 1]
        del args[i : i + 2]
        return value
    return None


def _spawn(argv: list[str], env: list[str], gate: str | None) -> int:
    pid = os.fork()
    if pid == 0:
        try:
            if gate:
                fd = os.open(gate, os.O_RDONLY)
                os.read(fd, 1)
                os.close(fd)
            os.execvpe(argv[0], argv, dict(e.split("=", 1) for e in env))
        except OSError as exc:
            os.write(2, f"fake: exec {argv[0]}: {exc.strerror}\n".encode())
        os._exit(127)
    return pid


def main() -> int:
    args = sys.argv[1:]
    root = _take(args, "--root") or "/tmp/fake-runtime"
    os.makedirs(root, exist_ok=True)
    cmd, args = args[0], args[1:]
    pid_file = _take(args, "--pid-file")
    if cmd == "create":
        bundle = _take(args, "--bundle") or "."
        cid = args[-1]
        with open(os.path.join(bundle, "config.json")) as fh:
            process = json.load(fh)["process"]
        if not process["args"][0].startswith("/") and not any(
            os.access(os.path.join(d, process["args"][0]), os.X_OK)
            for d in os.environ.get("PATH", "/bin").split(":")
        ):
            sys.stderr.write(f"fake: {process['args'][0]}: executable file not found\n")
            return 1
        gate = os.path.join(root, cid + ".start")
        os.mkfifo(gate)
        pid = _spawn(process["args"], process.get("env", []), gate)
    elif cmd == "start":
        gate = os.path.join(root, args[-1] + ".start")
        fd = os.open(gate, os.O_WRONLY)
        os.write(fd, b"x")
        os.close(fd)
        os.unlink(gate)
        return 0
    elif cmd == "exec":
        spec_path = _take(args, "--process") or ""
        with open(spec_path) as fh:
            process = json.load(fh)
        pid = _spawn(process["args"], process.get("env", []), None)
    elif cmd == "kill":
        cid, sig = [a for a in args if not a.startswith("-")][-2:]
        with open(os.path.join(root, cid + ".pid")) as fh:
            os.kill(int(fh.read()), int(sig))
        return 0
    elif cmd == "delete":
        cid = args[-1]
        for suffix in (".pid", ".start"):
            path = os.path.join(root, cid + suffix)
            if os.path.exists(path):
                os.unlink(path)
        return 0
    else:
        sys.stderr.write(f"fake: {cmd} is not implemented\n")
        return 1
    if pid_file:
        with open(pid_file, "w") as fh:
            fh.write(str(pid))
    if cmd == "create":
        with open(os.path.join(root, args[-1] + ".pid"), "w") as fh:
            fh.write(str(pid))
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    sys.exit(main())
