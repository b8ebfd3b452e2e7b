"""The per-container monitor (the role of containerd-shim or conmon).

One process per task: a subreaper that runs the runtime's `create` and `start`, holds
the container's stdio, writes its output to a json-file log or to fifos, records exit
statuses and OOM kills, and answers a small JSON-lines protocol on its own socket
(`protocol.py`). It imports only the standard library, so its memory stays small;
shimd talks to it through `shim.monitor.client`.
"""
