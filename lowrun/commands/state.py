from __future__ import annotations

import sys
from types import SimpleNamespace

from lowrun import jsonio
from lowrun.commands import store_of
from lowrun.container.lifecycle import state_document


def main(args: SimpleNamespace) -> int:
    store = store_of(args)
    doc = state_document(store, store.load(args.container_id))
    sys.stdout.write(jsonio.dumps(doc, indent=2) + "\n")
    return 0
