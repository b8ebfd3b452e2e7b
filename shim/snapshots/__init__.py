"""Snapshots of root filesystems: the overlay snapshotter and its types."""

from shim.snapshots.overlay import Kind, Mount, OverlaySnapshotter, SnapshotInfo, Usage

__all__ = ["Kind", "Mount", "OverlaySnapshotter", "SnapshotInfo", "Usage"]
