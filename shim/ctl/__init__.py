"""shimctl: the operator's command line over `shim.client`, as ctr is for containerd.

Subcommand modules plug in with `register(subparsers)`: each parser they add sets
`func=callable(client: shim.client.Client, args: argparse.Namespace) -> int` as its
default (the exit status). `shim.ctl.images` is loaded when it is present.
"""
