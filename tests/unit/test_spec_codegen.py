"""The generated config.json validator: built from oci-specs/, standalone, and in agreement
with jsonschema (the reference implementation) over a corpus of real and broken configs."""

from __future__ import annotations

import ast
import copy
import json
import os
import re
import shutil
import subprocess
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from lowrun.spec import codegen
from lowrun.spec.default import default_spec
from lowrun.spec.load import _find_path
from tests.support.bundle import base_config

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def generated() -> types.ModuleType:
    """The validator generated from the schemas as they are now in the tree."""
    module = types.ModuleType("generated_validator")
    source = codegen.generate_source(ROOT)
    exec(compile(source, "generated_validator", "exec"), module.__dict__)
    return module


@pytest.fixture(scope="module")
def reference() -> jsonschema.Draft4Validator:
    schema = codegen.bundled_schema(ROOT)
    jsonschema.Draft4Validator.check_schema(schema)
    return jsonschema.Draft4Validator(schema)


# --- generation -----------------------------------------------------------------------


def make_tree(tmp: Path) -> Path:
    shutil.copytree(ROOT / "oci-specs", tmp / "oci-specs")
    (tmp / "lowrun" / "spec").mkdir(parents=True)
    return tmp


def test_generate_writes_and_byte_compiles(tmp_path: Path) -> None:
    root = make_tree(tmp_path)
    assert codegen.is_stale(root)
    codegen.generate(root)
    output = root / codegen.OUTPUT
    assert output.exists()
    assert list((output.parent / "__pycache__").glob("_generated_validator.*.pyc"))
    assert not codegen.is_stale(root)


def test_generate_only_when_older_than_the_schemas(tmp_path: Path) -> None:
    root = make_tree(tmp_path)
    codegen.generate(root)
    output = root / codegen.OUTPUT
    future = output.stat().st_mtime + 1000
    os.utime(output, (future, future))
    codegen.generate(root)
    assert output.stat().st_mtime == future  # up to date: not rewritten
    schema = root / codegen.SCHEMA_DIR / "defs-linux.json"
    os.utime(schema, (future + 1, future + 1))
    assert codegen.is_stale(root)
    codegen.generate(root)
    assert output.stat().st_mtime != future
    assert not codegen.is_stale(root) or output.stat().st_mtime < future + 1


def test_generated_module_imports_nothing() -> None:
    """Only `re`, lazily, inside the fallback for a pattern without a fast predicate."""
    tree = ast.parse(codegen.generate_source(ROOT))
    top_level = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
    assert top_level == []
    nested = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert nested <= {"re"}


def test_every_schema_pattern_has_a_fast_predicate() -> None:
    source = codegen.generate_source(ROOT)
    assert "_LazyRegex(" not in source.split("REGEX_PATTERNS = {", 1)[1].split("}", 1)[0]


def test_refs_are_all_local_after_bundling() -> None:
    text = json.dumps(codegen.bundled_schema(ROOT))
    refs = re.findall(r'"\$ref": "([^"]*)"', text)
    assert refs
    assert all(ref.startswith("#/") for ref in refs)


def test_load_path_imports_stay_lean(tmp_path: Path) -> None:
    """Loading a bundle must not import jsonschema, fastjsonschema, re, json, dataclasses..."""
    codegen.generate(ROOT)
    bundle = tmp_path / "b"
    (bundle / "rootfs").mkdir(parents=True)
    (bundle / "config.json").write_text(json.dumps(default_spec()))
    script = (
        f"import sys; sys.path.insert(0, {str(ROOT)!r})\n"
        "from lowrun.spec.load import load_bundle\n"
        f"load_bundle({str(bundle)!r})\n"
        "print(' '.join(sorted(sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-S", "-E", "-c", script], check=True, capture_output=True, text=True
    ).stdout.split()
    heavy = {
        "jsonschema",
        "fastjsonschema",
        "re",
        "json",
        "dataclasses",
        "typing",
        "decimal",
        "subprocess",
        "enum",
        "inspect",
    }
    assert "lowrun.spec._generated_validator" in out
    assert heavy.isdisjoint(out), heavy & set(out)


# --- the fast predicates agree with re ---------------------------------------------------

SAMPLES = [
    "",
    "/",
    "/a",
    "a/",
    "=",
    "A=",
    "A=b",
    "=b",
    "AB==",
    "1.2.0",
    "1.0.2-dev",
    "1.2",
    "1.2.",
    "v1.2.0",
    "10.20.30x",
    "1.2.0\n",
    "RLIMIT_NOFILE",
    "RLIMIT_",
    "RLIMIT_nofile",
    "RLIMIT_NOFILE\n",
    "RLIMIT_NOFILE\n\n",
    "XRLIMIT_A",
    "CAP_KILL",
    "CAP_",
    "CAP_SYS_ADMIN",
    "CAP_kill",
    "CAP_BPF2",
    "CAP_KILL\n",
    "cap_kill",
    "0-3",
    "0,1",
    "0, 2-4",
    "0-1a",
    "\n",
    "0-3\n",
    "rwm",
    "r",
    "rwx",
    "mr",
    "rw\n",
    "2MB",
    "1GB",
    "64KB",
    "2M",
    "MB",
    "2TB",
    "02MB",
    "2MB\n",
    "2MB ",
    "é",
    "CAP_É",
    "\u0661.\u0662.\u0663",  # digits that are not [0-9]
]


@pytest.mark.parametrize("pattern", sorted(codegen.FAST_PATTERNS))
def test_fast_predicate_agrees_with_re(generated: types.ModuleType, pattern: str) -> None:
    predicate = generated.REGEX_PATTERNS[pattern]
    compiled = re.compile(pattern)
    for sample in SAMPLES:
        assert bool(predicate.search(sample)) == bool(compiled.search(sample)), (pattern, sample)


# --- agreement with jsonschema over a corpus --------------------------------------------


def tool_spec(tool: str, *flags: str) -> dict[str, Any] | None:
    """The config.json that `runc spec` / `crun spec` writes, or None without the tool."""
    binary = shutil.which(tool)
    if binary is None:
        return None
    with __import__("tempfile").TemporaryDirectory() as tmp:
        subprocess.run([binary, "spec", *flags], cwd=tmp, check=True, capture_output=True)
        result: dict[str, Any] = json.loads(Path(tmp, "config.json").read_text())
        return result


def full_config() -> dict[str, Any]:
    """Every section lowrun knows, filled in."""
    config = default_spec()
    config["process"].update(
        consoleSize={"height": 24, "width": 80},
        user={"uid": 1000, "gid": 1000, "umask": 0o22, "additionalGids": [5, 10]},
        oomScoreAdj=-500,
        apparmorProfile="",
        selinuxLabel="",
        scheduler={"policy": "SCHED_OTHER", "nice": 5, "flags": ["SCHED_FLAG_RESET_ON_FORK"]},
        ioPriority={"class": "IOPRIO_CLASS_BE", "priority": 4},
        execCPUAffinity={"initial": "0", "final": "0-1"},
    )
    config["process"]["capabilities"]["inheritable"] = []
    config["domainname"] = "example.org"
    config["annotations"] = {"org.example.key": "value", "io.kubernetes.cri": ""}
    config["mounts"].append(
        {"destination": "/data", "type": "bind", "source": "/srv", "options": ["rbind", "ro"]}
    )
    config["mounts"].append({"destination": "/tmp"})
    config["hooks"] = {
        phase: [{"path": "/usr/bin/hook", "args": ["hook", phase], "env": ["A=b"], "timeout": 5}]
        for phase in (
            "prestart",
            "createRuntime",
            "createContainer",
            "startContainer",
            "poststart",
            "poststop",
        )
    }
    linux = config["linux"]
    linux["namespaces"] += [{"type": "cgroup"}, {"type": "time"}]
    linux["timeOffsets"] = {"monotonic": {"secs": -100, "nanosecs": 5}}
    linux["cgroupsPath"] = "/berth/test"
    linux["rootfsPropagation"] = "rprivate"
    linux["sysctl"] = {"net.ipv4.ip_forward": "1"}
    linux["devices"] = [
        {
            "path": "/dev/fuse",
            "type": "c",
            "major": 10,
            "minor": 229,
            "fileMode": 0o666,
            "uid": 0,
            "gid": 0,
        }
    ]
    linux["resources"] = {
        "devices": [
            {"allow": False, "access": "rwm"},
            {"allow": True, "type": "c", "major": 10, "minor": 229, "access": "rw"},
        ],
        "memory": {
            "limit": 1 << 28,
            "reservation": 1 << 27,
            "swap": -1,
            "swappiness": 0,
            "disableOOMKiller": False,
        },
        "cpu": {
            "shares": 512,
            "quota": 50000,
            "period": 100000,
            "cpus": "0-1",
            "mems": "0",
            "realtimeRuntime": 0,
            "realtimePeriod": 0,
            "burst": 0,
            "idle": 0,
        },
        "pids": {"limit": 64},
        "blockIO": {
            "weight": 500,
            "weightDevice": [{"major": 8, "minor": 0, "weight": 300}],
            "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}],
            "throttleWriteIOPSDevice": [{"major": 8, "minor": 0, "rate": 100}],
        },
        "hugepageLimits": [{"pageSize": "2MB", "limit": 0}],
        "network": {"classID": 0x100001, "priorities": [{"name": "eth0", "priority": 5}]},
        "rdma": {"mlx5_1": {"hcaHandles": 3, "hcaObjects": 10000}},
        "unified": {"memory.high": "max"},
    }
    linux["seccomp"] = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 1,
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
        "flags": ["SECCOMP_FILTER_FLAG_LOG"],
        "syscalls": [
            {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
            {
                "names": ["personality"],
                "action": "SCMP_ACT_ALLOW",
                "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}],
            },
            {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
        ],
    }
    linux["personality"] = {"domain": "LINUX"}
    linux["intelRdt"] = {"closID": "guaranteed", "l3CacheSchema": "L3:0=ffff"}
    linux["maskedPaths"].append("/proc/kmsg")
    linux["mountLabel"] = ""
    return config


def valid_configs() -> list[tuple[str, dict[str, Any]]]:
    configs = [
        ("lowrun default", default_spec()),
        ("tests base", base_config()),
        ("everything", full_config()),
        ("minimal", {"ociVersion": "1.0.0"}),
    ]
    for tool, flags in (
        ("runc", ()),
        ("runc", ("--rootless",)),
        ("crun", ()),
        ("crun", ("--rootless",)),
    ):
        config = tool_spec(tool, *flags)
        if config is not None:
            configs.append((f"{tool} spec {' '.join(flags)}".strip(), config))
    return configs


Mutation = Callable[[dict[str, Any]], None]


def put(path: str, value: Any) -> Mutation:
    """Set a value at a dotted path ("process.args.0"), creating objects on the way."""

    def mutate(config: dict[str, Any]) -> None:
        parts = [int(p) if p.isdigit() else p for p in path.split(".")]
        node: Any = config
        for part in parts[:-1]:
            node = node.setdefault(part, {}) if isinstance(part, str) else node[part]
        node[parts[-1]] = value

    return mutate


def drop(path: str) -> Mutation:
    def mutate(config: dict[str, Any]) -> None:
        parts = [int(p) if p.isdigit() else p for p in path.split(".")]
        node: Any = config
        for part in parts[:-1]:
            node = node[part]
        del node[parts[-1]]

    return mutate


MUTATIONS: list[tuple[str, Mutation]] = [
    ("ociVersion missing", drop("ociVersion")),
    ("ociVersion number", put("ociVersion", 1.2)),
    ("ociVersion not semver", put("ociVersion", "v1")),
    ("args item int", put("process.args.0", 42)),
    ("args not list", put("process.args", "sh -c true")),
    ("cwd missing", drop("process.cwd")),
    ("cwd null", put("process.cwd", None)),
    ("uid negative", put("process.user.uid", -1)),
    ("uid too big", put("process.user.uid", 1 << 32)),
    ("uid float", put("process.user.uid", 1.5)),
    ("uid integral float", put("process.user.uid", 1.0)),
    ("uid bool", put("process.user.uid", True)),
    ("umask too big", put("process.user.umask", 0o10000)),
    ("env without =", put("process.env.0", "PATH")),
    ("env starts with =", put("process.env.0", "=x")),
    ("terminal string", put("process.terminal", "yes")),
    ("rlimit type lower", put("process.rlimits.0.type", "RLIMIT_nofile")),
    ("rlimit soft missing", drop("process.rlimits.0.soft")),
    ("rlimit hard negative", put("process.rlimits.0.hard", -1)),
    ("capability lowercase", put("process.capabilities.bounding.0", "cap_kill")),
    ("oomScoreAdj out of range", put("process.oomScoreAdj", 1001)),
    ("consoleSize width missing", put("process.consoleSize", {"height": 1})),
    ("ioPriority class", put("process.ioPriority", {"class": "IOPRIO_CLASS_NONE"})),
    ("scheduler policy", put("process.scheduler", {"policy": "SCHED_FAST"})),
    ("root path missing", drop("root.path")),
    ("root path empty", put("root.path", "")),
    ("root readonly string", put("root.readonly", "true")),
    ("mounts object", put("mounts", {"destination": "/x"})),
    ("mount destination missing", drop("mounts.0.destination")),
    ("mount options string", put("mounts.1.options", "nosuid")),
    ("mount uidMappings incomplete", put("mounts.0.uidMappings", [{"hostID": 1, "size": 1}])),
    ("hook path relative", put("hooks.prestart", [{"path": "hook"}])),
    ("hook path missing", put("hooks.poststart", [{"args": ["x"]}])),
    ("hook timeout zero", put("hooks.poststop", [{"path": "/x", "timeout": 0}])),
    ("hook env not list", put("hooks.createRuntime", [{"path": "/x", "env": "A=b"}])),
    ("namespace unknown", put("linux.namespaces.0.type", "net")),
    ("namespace type missing", put("linux.namespaces.0", {"path": "/proc/1/ns/pid"})),
    ("uidMappings size missing", put("linux.uidMappings", [{"containerID": 0, "hostID": 0}])),
    ("memory limit string", put("linux.resources.memory", {"limit": "1g"})),
    ("memory swappiness negative", put("linux.resources.memory", {"swappiness": -1})),
    ("cpu cpus letters", put("linux.resources.cpu", {"cpus": "0-1a"})),
    ("pids limit missing", put("linux.resources.pids", {})),
    ("pids limit bool", put("linux.resources.pids", {"limit": True})),
    ("device rule allow missing", put("linux.resources.devices.0", {"access": "rwm"})),
    ("device rule access", put("linux.resources.devices.0.access", "rwx")),
    ("blkio weight too big", put("linux.resources.blockIO", {"weight": 1001})),
    (
        "throttle rate missing",
        put("linux.resources.blockIO", {"throttleReadBpsDevice": [{"major": 8, "minor": 0}]}),
    ),
    ("hugepage size", put("linux.resources.hugepageLimits", [{"pageSize": "2M", "limit": 1}])),
    ("classID too big", put("linux.resources.network", {"classID": 1 << 32})),
    ("device type", put("linux.devices", [{"path": "/dev/x", "type": "x"}])),
    ("device path relative", put("linux.devices", [{"path": "dev/x", "type": "c"}])),
    ("seccomp defaultAction", put("linux.seccomp", {"defaultAction": "ALLOW"})),
    (
        "seccomp names empty",
        put(
            "linux.seccomp",
            {
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": [], "action": "SCMP_ACT_ERRNO"}],
            },
        ),
    ),
    (
        "seccomp arg op",
        put(
            "linux.seccomp",
            {
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [
                    {
                        "names": ["x"],
                        "action": "SCMP_ACT_LOG",
                        "args": [{"index": 0, "value": 1, "op": "EQ"}],
                    }
                ],
            },
        ),
    ),
    (
        "seccomp arch",
        put("linux.seccomp", {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["x86_64"]}),
    ),
    ("rootfsPropagation", put("linux.rootfsPropagation", "recursive")),
    ("sysctl value int", put("linux.sysctl", {"kernel.shmmax": 1})),
    ("annotations value bool", put("annotations", {"a": False})),
    ("annotations list", put("annotations", ["a=b"])),
    ("personality domain", put("linux.personality", {"domain": "BSD"})),
    ("timeOffsets secs string", put("linux.timeOffsets", {"boottime": {"secs": "1"}})),
    ("hostname int", put("hostname", 7)),
    # accepted oddities, to make sure both sides accept them alike
    ("unknown top-level key", put("x-vendor", {"anything": [1, 2]})),
    ("rlimit type with final newline", put("process.rlimits.0.type", "RLIMIT_NOFILE\n")),
    ("empty env", put("process.env", [])),
]


def corpus() -> list[tuple[str, Any]]:
    cases: list[tuple[str, Any]] = list(valid_configs())
    base = default_spec()
    for name, mutate in MUTATIONS:
        config = copy.deepcopy(base)
        mutate(config)
        cases.append((name, config))
    cases += [("top-level list", [base]), ("top-level string", "{}"), ("top-level null", None)]
    return cases


CORPUS = corpus()


@pytest.mark.parametrize(("name", "config"), CORPUS, ids=[n for n, _ in CORPUS])
def test_generated_validator_agrees_with_jsonschema(
    generated: types.ModuleType,
    reference: jsonschema.Draft4Validator,
    name: str,
    config: Any,
) -> None:
    errors = list(reference.iter_errors(config))
    try:
        generated.validate(copy.deepcopy(config))
    except generated.JsonSchemaValueException as exc:
        assert errors, f"{name}: only the generated validator refuses it: {exc.message}"
        where = _find_path(config, exc.name)  # the mapping load.py uses for messages
        assert where in [list(e.absolute_path) for e in errors], (
            f"{name}: generated validator blames {exc.name}, jsonschema "
            f"{[list(e.absolute_path) for e in errors]}"
        )
    else:
        assert not errors, f"{name}: only jsonschema refuses it: {errors[0].message}"


def test_corpus_has_both_outcomes(reference: jsonschema.Draft4Validator) -> None:
    outcomes = [reference.is_valid(config) for _, config in CORPUS]
    assert outcomes.count(True) >= 6
    assert outcomes.count(False) >= 30
