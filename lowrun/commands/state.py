from __future__ import annotations

import argparse
import json
import sys

from lowrun.commands import store_of
from lowrun.container.lifecycle import state_document


def main(args: argparse.Namespace) -> int:
    store = store_of(args)
    doc = state_document(store, store.load(args.container_id))
    sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    return 0
