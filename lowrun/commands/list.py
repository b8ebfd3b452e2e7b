from __future__ import annotations

import sys
from types import SimpleNamespace

from lowrun import jsonio
from lowrun.commands import store_of
from lowrun.container.lifecycle import state_document
from lowrun.errors import ContainerNotFound

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def main(args: SimpleNamespace) -> int:
    store = store_of(args)
    docs: list[dict[str, Any]] = []
    for container_id in store.ids():
        try:
            docs.append(state_document(store, store.load(container_id)))
        except ContainerNotFound:
            continue
    if args.quiet:
        sys.stdout.write("".join(d["id"] + "\n" for d in docs))
    elif args.format == "json":
        sys.stdout.write(jsonio.dumps(docs) + "\n")
    else:
        rows = [("ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER")]
        rows += [(d["id"], str(d["pid"]), d["status"], d["bundle"], d["created"], d["owner"])
                 for d in docs]
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for row in rows:
            cells = (c.ljust(w) for c, w in zip(row, widths, strict=True))
            sys.stdout.write("   ".join(cells).rstrip() + "\n")
    return 0
