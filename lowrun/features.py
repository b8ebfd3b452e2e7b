"""`lowrun features`: what this runtime supports, in the shape `runc features` prints
(runtime-spec features.md), so that a caller which asks runc can ask lowrun the same way.

Every list is read from the module that implements the feature (mount options from
`lowrun.mounts`, namespaces from `lowrun.namespaces`, capabilities from
`lowrun.capabilities`, seccomp from `lowrun.seccomp`), so that the answer cannot drift
from what lowrun actually does. Not on the hot path: it may import those modules.
"""

from __future__ import annotations

from lowrun import OCI_VERSION, __version__

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

OCI_VERSION_MIN = "1.0.0"

HOOKS = (
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
)


def mount_options() -> list[str]:
    """Every option `lowrun.mounts.parse_options` gives a meaning (runc's list, sorted)."""
    from lowrun import mounts

    known = set(mounts.FLAGS) | set(mounts.PROPAGATION) | set(mounts.RECURSIVE)
    return sorted(known - set(mounts.UNSUPPORTED))


def namespaces() -> list[str]:
    from lowrun import namespaces as ns

    return sorted(ns.FLAGS)


def capabilities() -> list[str]:
    """The capabilities lowrun can apply on this kernel, in kernel order (as runc lists them)."""
    from lowrun import capabilities as caps

    return sorted(caps.NAMES, key=caps.NAMES.__getitem__)


def seccomp() -> dict[str, Any]:
    """Seccomp support: enabled only when libseccomp.so.2 loads and the kernel filters."""
    from lowrun import seccomp as sc

    if not sc.available():
        return {"enabled": False}
    return {
        "enabled": True,
        "actions": sorted(sc._ACTIONS),
        "operators": sorted(sc._OPS),
        "archs": sorted(sc.ARCHITECTURES),
    }


def _annotations(seccomp_enabled: bool) -> dict[str, str]:
    annotations = {"org.berth.lowrun.version": __version__}
    if seccomp_enabled:
        from lowrun import seccomp as sc

        major, minor, micro = sc.libseccomp_version()
        annotations["io.github.seccomp.libseccomp.version"] = f"{major}.{minor}.{micro}"
    return dict(sorted(annotations.items()))


def features() -> dict[str, Any]:
    """The features document; a new dict on each call."""
    seccomp_features = seccomp()
    return {
        "ociVersionMin": OCI_VERSION_MIN,
        "ociVersionMax": OCI_VERSION,
        "hooks": list(HOOKS),
        "mountOptions": mount_options(),
        "linux": {
            "namespaces": namespaces(),
            "capabilities": capabilities(),
            # Both drivers exist (v1, and v2 chosen when the host is unified); neither
            # systemd driver does: a `slice:prefix:name` cgroupsPath is refused.
            "cgroup": {"v1": True, "v2": True, "systemd": False, "systemdUser": False},
            "seccomp": seccomp_features,
            "apparmor": {"enabled": False},
            "selinux": {"enabled": False},
        },
        "annotations": _annotations(bool(seccomp_features["enabled"])),
    }
