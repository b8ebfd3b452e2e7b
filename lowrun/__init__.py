"""lowrun: an OCI runtime with runc's command line.

The library is usable without the CLI: `lowrun.container` holds the lifecycle,
the modules beside it one kernel concept each. Keep imports here empty: the
`lowrun` process starts often and must start fast.
"""

__version__ = "0.1.0"
OCI_VERSION = "1.2.0"
