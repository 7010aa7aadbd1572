"""What `sam build` packs into each function (issue 17): runtime code only, bytecode that Lambda's
Python 3.12 uses without writing, and the same bytes for a function whose code did not change.

The contents are read from `.aws-sam/build`, which `make test` builds first (`make build-check`,
the build `make deploy` runs); without it those tests are skipped and say so. The repeatability
test builds one function itself with the same make target sam runs, from a copy of the
repository, reusing the dependencies that build installed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from devstack.lambda_package import folder_of, package_paths
from devstack.template import ROOT, load_template

BUILD = ROOT / ".aws-sam" / "build"
FUNCTIONS = {name: res for name, res in load_template()["Resources"].items()
             if isinstance(res, dict) and res.get("Type") == "AWS::Serverless::Function"}
NEVER_SHIPPED = ("tests", "sandbox", "devstack", "bench", "web", "docs", "events", "conftest.py")
UNCHECKED_HASH = 0b01  # PEP 552: hash-based, source not checked

built = pytest.mark.skipif(not (BUILD / "template.yaml").exists(),
                           reason="no .aws-sam/build: run make build-check (make test does)")


@pytest.mark.parametrize("logical_id", sorted(FUNCTIONS))
def test_every_function_is_built_by_the_makefile_from_its_own_folder(logical_id):
    """A function added without the metadata would be packed the old way: everything, no
    bytecode. Its logical id must name its folder, which is how make finds what to pack."""
    function = FUNCTIONS[logical_id]
    assert function.get("Metadata", {}).get("BuildMethod") == "makefile", (
        f"{logical_id}: add `Metadata: {{BuildMethod: makefile}}` (see the other functions)")
    folder = function["Properties"]["Handler"].split("/")[1]
    assert folder_of(logical_id) == folder, (
        f"{logical_id} must be named {''.join(p.title() for p in folder.split('_'))}Function "
        f"for functions/{folder}")


def _files(package: Path) -> list[Path]:
    return sorted(p for p in package.rglob("*") if p.is_file())


def _checksum(package: Path) -> str:
    """sam's checksum of an artifact directory (samcli.lib.utils.hash.dir_checksum): relative
    paths and contents, no times. It names the S3 object, which decides whether a new version
    is published."""
    digest = hashlib.md5(usedforsecurity=False)
    for path in _files(package):
        digest.update(str(path.relative_to(package)).encode())
        digest.update(hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest().encode())
    return digest.hexdigest()


@built
@pytest.mark.parametrize("logical_id", sorted(FUNCTIONS))
def test_package_holds_runtime_code_only(logical_id):
    package = BUILD / logical_id
    assert package.is_dir(), f"{logical_id} is not built: rerun make build-check"
    top = {p.name for p in package.iterdir()}
    assert not top & set(NEVER_SHIPPED), top & set(NEVER_SHIPPED)
    assert {p.name for p in (package / "functions").iterdir()} == {
        "__init__.py", "__pycache__", folder_of(logical_id)}
    ours = {str(p.relative_to(package)) for p in (package / "shared").iterdir()
            if p.name != "__pycache__"} | {"functions/__init__.py",
                                           f"functions/{folder_of(logical_id)}"}
    if (package / "migrations").exists():
        ours.add("migrations")
    assert ours == set(package_paths(logical_id)), "stale build: rerun make build-check"
    # The shipped migrations are the repository's, all of them.
    if "migrations" in ours:
        assert {p.name for p in (package / "migrations").iterdir()} == {
            p.name for p in (ROOT / "migrations").iterdir()}


@built
@pytest.mark.parametrize("logical_id", sorted(FUNCTIONS))
def test_every_module_has_bytecode_lambda_uses_as_it_is(logical_id):
    package = BUILD / logical_id
    sources = [p for p in package.rglob("*.py")]
    assert len(sources) > 500  # the dependencies are in it too
    missing, checked = [], []
    for source in sources:
        pyc = source.parent / "__pycache__" / f"{source.stem}.cpython-312.pyc"
        if not pyc.exists():
            missing.append(str(source.relative_to(package)))
            continue
        header = pyc.read_bytes()[:16]
        if int.from_bytes(header[4:8], "little") != UNCHECKED_HASH:
            checked.append(str(pyc.relative_to(package)))
    assert not missing, missing[:10]
    assert not checked, f"not unchecked-hash: {checked[:10]}"
    # Compiled where the code runs, not where it was built: tracebacks name /var/task.
    pyc = package / "functions" / "__pycache__" / "__init__.cpython-312.pyc"
    assert b"/var/task/functions/__init__.py" in pyc.read_bytes()
    assert str(ROOT).encode() not in pyc.read_bytes()


def _deps_dir() -> Path | None:
    wheels = ROOT / ".aws-sam" / "wheels"
    done = sorted(wheels.glob("arm64-3.12-*/.complete")) if wheels.exists() else []
    return done[-1].parent if done else None


def _make_package(source: Path, logical_id: str, out: Path) -> str:
    out.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")}
    done = subprocess.run(["make", "-s", f"build-{logical_id}", f"ARTIFACTS_DIR={out}"],
                          cwd=source, env=env, capture_output=True, text=True, timeout=600,
                          check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return _checksum(out)


@pytest.mark.skipif(_deps_dir() is None,
                    reason="no arm64 dependencies in .aws-sam/wheels: run make build-check")
def test_a_function_s_package_changes_only_with_its_own_code(tmp_path):
    """Built twice: the same bytes. Then docs, tests, another function's folder and a shared
    package this function does not import change: still the same bytes (no new version).
    Then its own code changes: a new package."""
    source = tmp_path / "repo"
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                             "--exclude-standard"], cwd=ROOT, capture_output=True,
                            check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    (source / ".aws-sam" / "wheels").mkdir(parents=True)
    deps = _deps_dir()
    (source / ".aws-sam" / "wheels" / deps.name).symlink_to(deps)

    function = "TokenStatusFunction"
    assert "shared/hsm" not in package_paths(function)
    first = _make_package(source, function, tmp_path / "a")
    assert _make_package(source, function, tmp_path / "b") == first

    for unrelated in ("docs/DEPLOY.md", "tests/test_token_status.py",
                      "functions/hsm_logs/app.py", "shared/hsm/__init__.py", "README.md"):
        with (source / unrelated).open("a") as fh:
            fh.write("\n# an unrelated change\n")
    assert _make_package(source, function, tmp_path / "c") == first

    with (source / "functions" / "token_status" / "app.py").open("a") as fh:
        fh.write("\n# its own change\n")
    assert _make_package(source, function, tmp_path / "d") != first
