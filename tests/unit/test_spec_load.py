"""lowrun.spec.load: bad bundles fail with a typed error naming the JSON path and the problem."""

from __future__ import annotations

import copy
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lowrun.errors import BundleError, ConfigError, LowrunError
from lowrun.spec import codegen
from lowrun.spec import load as load_module
from lowrun.spec.default import default_spec
from lowrun.spec.load import (
    Bundle,
    json_path,
    load_bundle,
    load_process,
    parse_json,
    validate_config,
    validate_process,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module", autouse=True)
def fresh_validator() -> None:
    """Regenerate the validator if a schema changed since setup, and use the new one."""
    if codegen.is_stale(ROOT):
        codegen.generate(ROOT)
        sys.modules.pop("lowrun.spec._generated_validator", None)
        load_module._validator = None


def good_config() -> dict[str, Any]:
    config = default_spec()
    config["process"]["terminal"] = False
    return config


def write_bundle(tmp: Path, config: Any, *, raw: str | None = None, rootfs: bool = True) -> Path:
    bundle = tmp / "bundle"
    bundle.mkdir()
    if rootfs:
        (bundle / "rootfs").mkdir()
    text = raw if raw is not None else json.dumps(config, indent=2)
    (bundle / "config.json").write_text(text)
    return bundle


def test_loads_a_good_bundle(tmp_path: Path) -> None:
    bundle_dir = write_bundle(tmp_path, good_config())
    bundle = load_bundle(str(bundle_dir))
    assert bundle.path == str(bundle_dir)
    assert bundle.rootfs == str(bundle_dir / "rootfs")
    assert bundle.config == good_config()


def test_relative_bundle_path_is_made_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_bundle(tmp_path, good_config())
    monkeypatch.chdir(tmp_path)
    bundle = load_bundle("bundle")
    assert bundle.path == str(tmp_path / "bundle")
    assert os.path.isabs(bundle.rootfs)


def test_absolute_root_path_is_kept(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    config = good_config()
    config["root"]["path"] = str(elsewhere)
    bundle = load_bundle(str(write_bundle(tmp_path, config, rootfs=False)))
    assert bundle.rootfs == str(elsewhere)


def test_bundle_is_frozen(tmp_path: Path) -> None:
    bundle = load_bundle(str(write_bundle(tmp_path, good_config())))
    with pytest.raises(AttributeError, match="frozen"):
        bundle.path = "/elsewhere"  # type: ignore[misc]
    assert bundle == Bundle(bundle.path, bundle.config, bundle.rootfs)
    assert "rootfs=" in repr(bundle)


# --- the bundle directory ------------------------------------------------------------


def test_missing_bundle_directory(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="does not exist"):
        load_bundle(str(tmp_path / "nope"))


def test_bundle_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(BundleError, match="is not a directory"):
        load_bundle(str(tmp_path / "file"))


def test_missing_config_json(tmp_path: Path) -> None:
    (tmp_path / "rootfs").mkdir()
    with pytest.raises(BundleError, match=r"has no config\.json"):
        load_bundle(str(tmp_path))


def test_missing_rootfs(tmp_path: Path) -> None:
    bundle = write_bundle(tmp_path, good_config(), rootfs=False)
    with pytest.raises(BundleError, match=r"rootfs .*/rootfs \(\$\.root\.path\) does not exist"):
        load_bundle(str(bundle))


def test_rootfs_that_is_a_file(tmp_path: Path) -> None:
    bundle = write_bundle(tmp_path, good_config(), rootfs=False)
    (bundle / "rootfs").write_text("not a directory")
    with pytest.raises(BundleError, match=r"\(\$\.root\.path\) is not a directory"):
        load_bundle(str(bundle))


def test_rootfs_that_is_a_dangling_symlink(tmp_path: Path) -> None:
    bundle = write_bundle(tmp_path, good_config(), rootfs=False)
    (bundle / "rootfs").symlink_to(tmp_path / "gone")
    with pytest.raises(BundleError, match="is not a directory"):
        load_bundle(str(bundle))


# --- JSON ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "column"),
    [
        ('{"ociVersion": "1.2.0",}', 1, 24),
        ('{\n  "ociVersion": "1.2.0"\n  "root": {}\n}', 3, 3),
        ("", 1, 1),
        ('{"a": 1} trailing', 1, 10),
        ('{"a": tru}', 1, 7),
    ],
)
def test_invalid_json_names_line_and_column(
    tmp_path: Path, text: str, line: int, column: int
) -> None:
    bundle = write_bundle(tmp_path, None, raw=text)
    with pytest.raises(ConfigError) as info:
        load_bundle(str(bundle))
    assert info.value.where == "$"
    assert f"line {line}, column {column}" in info.value.problem


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_json_constants_are_refused(constant: str) -> None:
    with pytest.raises(ConfigError, match=f"{constant} is not valid JSON"):
        parse_json(f'{{"a": {constant}}}')


def test_json_not_utf8() -> None:
    with pytest.raises(ConfigError, match="not UTF-8"):
        parse_json(b'{"a": "\xff"}')


def test_parse_json_matches_the_json_module() -> None:
    text = json.dumps(
        {"a": [1, 2.5, -3e2, True, False, None], "b": {"c": "d\u00e9\n"}, "e": 10**30}, indent=1
    )
    assert parse_json("  \n" + text + "\n ") == json.loads(text)


# --- schema violations: each with the exact path --------------------------------------

Mutation = Callable[[dict[str, Any]], None]


def _set(path: list[str | int], value: Any) -> Mutation:
    def mutate(config: dict[str, Any]) -> None:
        node: Any = config
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = value

    return mutate


def _delete(path: list[str | int]) -> Mutation:
    def mutate(config: dict[str, Any]) -> None:
        node: Any = config
        for part in path[:-1]:
            node = node[part]
        del node[path[-1]]

    return mutate


SCHEMA_CASES: list[tuple[str, Mutation, str, str]] = [
    (
        "args item not a string",
        _set(["process", "args", 0], 42),
        "$.process.args[0]",
        "must be string (got 42)",
    ),
    (
        "destination not a string",
        _set(["mounts", 2, "destination"], 7),
        "$.mounts[2].destination",
        "must be string",
    ),
    ("missing ociVersion", _delete(["ociVersion"]), "$.ociVersion", "is required"),
    ("missing cwd", _delete(["process", "cwd"]), "$.process.cwd", "is required"),
    (
        "missing destination",
        _delete(["mounts", 3, "destination"]),
        "$.mounts[3].destination",
        "is required",
    ),
    (
        "uid negative",
        _set(["process", "user", "uid"], -1),
        "$.process.user.uid",
        "must be bigger than or equal to 0",
    ),
    (
        "env without =",
        _set(["process", "env", 1], "TERM"),
        "$.process.env[1]",
        "must match pattern",
    ),
    (
        "rlimit type",
        _set(["process", "rlimits", 0, "type"], "NOFILE"),
        "$.process.rlimits[0].type",
        "must match pattern",
    ),
    (
        "capability name",
        _set(["process", "capabilities", "bounding", 2], "kill"),
        "$.process.capabilities.bounding[2]",
        "must match pattern",
    ),
    (
        "namespace type",
        _set(["linux", "namespaces", 1, "type"], "net"),
        "$.linux.namespaces[1].type",
        "must be one of",
    ),
    (
        "readonly not boolean",
        _set(["root", "readonly"], "yes"),
        "$.root.readonly",
        "must be boolean",
    ),
    (
        "sysctl value",
        _set(["linux", "sysctl"], {"net.ipv4.ip_forward": 1}),
        '$.linux.sysctl["net.ipv4.ip_forward"]',
        "must be string",
    ),
    (
        "annotation value",
        _set(["annotations"], {"org.example/key": True}),
        '$.annotations["org.example/key"]',
        "must be string",
    ),
    (
        "memory limit string",
        _set(["linux", "resources", "memory"], {"limit": "1g"}),
        "$.linux.resources.memory.limit",
        "must be integer",
    ),
    (
        "hook path relative",
        _set(["hooks"], {"prestart": [{"path": "bin/hook"}]}),
        "$.hooks.prestart[0].path",
        "must match pattern ^/",
    ),
    (
        "hook timeout zero",
        _set(["hooks"], {"poststop": [{"path": "/bin/true", "timeout": 0}]}),
        "$.hooks.poststop[0].timeout",
        "bigger than or equal to 1",
    ),
]


@pytest.mark.parametrize(
    ("mutate", "where", "problem"), [c[1:] for c in SCHEMA_CASES], ids=[c[0] for c in SCHEMA_CASES]
)
def test_schema_violation_names_the_path(
    tmp_path: Path, mutate: Mutation, where: str, problem: str
) -> None:
    config = good_config()
    mutate(config)
    with pytest.raises(ConfigError) as info:
        load_bundle(str(write_bundle(tmp_path, config)))
    assert info.value.where == where
    assert problem in info.value.problem
    assert str(info.value) == f"{info.value.where}: {info.value.problem}"


def test_config_that_is_not_an_object(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_bundle(str(write_bundle(tmp_path, [good_config()])))
    assert info.value.where == "$"
    assert info.value.problem.startswith("must be object (got [{")


# --- what the schema cannot express ---------------------------------------------------

SEMANTIC_CASES: list[tuple[str, Mutation, str, str]] = [
    ("no process", _delete(["process"]), "$.process", "required to create"),
    ("no root", _delete(["root"]), "$.root", "required on Linux"),
    ("empty args", _set(["process", "args"], []), "$.process.args", "must name the program"),
    ("no args", _delete(["process", "args"]), "$.process.args", "must name the program"),
    ("relative cwd", _set(["process", "cwd"], "srv"), "$.process.cwd", "absolute"),
    (
        "relative destination",
        _set(["mounts", 4, "destination"], "dev/mqueue"),
        "$.mounts[4].destination",
        "absolute",
    ),
    (
        "duplicate namespace",
        _set(["linux", "namespaces"], [{"type": "pid"}, {"type": "uts"}, {"type": "pid"}]),
        "$.linux.namespaces[2].type",
        "listed twice (first at $.linux.namespaces[0])",
    ),
    (
        "relative namespace path",
        _set(
            ["linux", "namespaces"], [{"type": "network", "path": "proc/1/ns/net"}, {"type": "uts"}]
        ),
        "$.linux.namespaces[0].path",
        "absolute",
    ),
    (
        "user namespace without mappings",
        _set(["linux", "namespaces"], [{"type": "user"}, {"type": "uts"}]),
        "$.linux.uidMappings",
        "required: a new user namespace is requested at $.linux.namespaces[0]",
    ),
    (
        "mappings without user namespace",
        _set(["linux", "uidMappings"], [{"containerID": 0, "hostID": 1000, "size": 1}]),
        "$.linux.uidMappings",
        "no user namespace",
    ),
    (
        "hostname without uts namespace",
        _set(["linux", "namespaces"], [{"type": "pid"}, {"type": "mount"}]),
        "$.hostname",
        "uts namespace",
    ),
    (
        "duplicate rlimit",
        _set(["process", "rlimits"], [{"type": "RLIMIT_NOFILE", "soft": 1, "hard": 1}] * 2),
        "$.process.rlimits[1].type",
        "set twice",
    ),
]


@pytest.mark.parametrize(
    ("mutate", "where", "problem"),
    [c[1:] for c in SEMANTIC_CASES],
    ids=[c[0] for c in SEMANTIC_CASES],
)
def test_semantic_violation_names_the_path(
    tmp_path: Path, mutate: Mutation, where: str, problem: str
) -> None:
    config = good_config()
    mutate(config)
    with pytest.raises(ConfigError) as info:
        load_bundle(str(write_bundle(tmp_path, config)))
    assert info.value.where == where
    assert problem in info.value.problem


def test_user_namespace_with_mappings_is_accepted() -> None:
    config = good_config()
    config["linux"]["namespaces"].append({"type": "user"})
    mapping = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    config["linux"]["uidMappings"] = mapping
    config["linux"]["gidMappings"] = copy.deepcopy(mapping)
    validate_config(config)


def test_joined_user_namespace_needs_no_mappings() -> None:
    config = good_config()
    config["linux"]["namespaces"].append({"type": "user", "path": "/proc/1/ns/user"})
    validate_config(config)


def test_process_optional_when_not_creating(tmp_path: Path) -> None:
    config = good_config()
    del config["process"]
    bundle = load_bundle(str(write_bundle(tmp_path, config)), require_process=False)
    assert "process" not in bundle.config


def test_dockers_recursive_rootfs_propagation_is_accepted() -> None:
    config = good_config()
    config["linux"]["rootfsPropagation"] = "rslave"
    validate_config(config)


def test_nothing_is_created_on_failure(tmp_path: Path) -> None:
    config = good_config()
    config["process"]["args"] = []
    bundle = write_bundle(tmp_path, config)
    before = sorted(p.name for p in bundle.rglob("*"))
    with pytest.raises(ConfigError):
        load_bundle(str(bundle))
    assert sorted(p.name for p in bundle.rglob("*")) == before


def test_errors_are_lowrun_errors() -> None:
    assert issubclass(ConfigError, LowrunError)
    assert issubclass(BundleError, LowrunError)


# --- exec --process --------------------------------------------------------------------


def test_validate_process_accepts_a_spec_process() -> None:
    validate_process(good_config()["process"])


@pytest.mark.parametrize(
    ("process", "where", "problem"),
    [
        ({"args": ["sh"]}, "$.cwd", "is required"),
        ({"cwd": "/", "args": []}, "$.args", "must name the program"),
        ({"cwd": "tmp", "args": ["sh"]}, "$.cwd", "absolute"),
        ({"cwd": "/", "args": ["sh"], "env": [3]}, "$.env[0]", "must be string"),
        (["sh"], "$", "must be object"),
    ],
)
def test_validate_process_errors(process: Any, where: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        validate_process(process)
    assert info.value.where == where
    assert problem in info.value.problem


def test_validate_process_prefix() -> None:
    with pytest.raises(ConfigError) as info:
        validate_process({"cwd": "/", "args": ["sh"], "user": {"uid": "root"}}, where="$.process")
    assert info.value.where == "$.process.user.uid"


def test_load_process_file(tmp_path: Path) -> None:
    path = tmp_path / "process.json"
    path.write_text(json.dumps({"cwd": "/", "args": ["ls", "-l"]}))
    assert load_process(str(path))["args"] == ["ls", "-l"]
    path.write_text('{"cwd": "/",\n "args": [}')
    with pytest.raises(ConfigError, match="line 2, column 11"):
        load_process(str(path))
    with pytest.raises(ConfigError, match="cannot read"):
        load_process(str(tmp_path / "missing.json"))


def test_json_path_rendering() -> None:
    assert json_path([]) == "$"
    assert json_path(["mounts", 2, "destination"]) == "$.mounts[2].destination"
    assert json_path(["annotations", 'a."b']) == '$.annotations["a.\\"b"]'
