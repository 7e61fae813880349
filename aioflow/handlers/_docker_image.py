"""Pack this Python environment into a local image: ``aioflow containers build-image``.

For machines without a registry (and for trying containers out): the image is a
root filesystem made of

* this interpreter's installation (``sys.base_prefix``: the executable and the
  standard library, without its tests, IDLE, Tk, ``ensurepip`` and its own
  ``site-packages``), at the same path, and ``/usr/local/bin/python``;
* the C libraries the interpreter and every extension module copied link
  (found with ``ldd``), at the paths they have here;
* aioflow and the distributions it requires (its runtime dependencies, with
  theirs), with ``--otel`` the OpenTelemetry SDK (``opentelemetry-sdk`` and what it
  requires: traced calls are traced inside too), and the modules named with
  ``--module``, from where this process imports them, in the image's
  ``site-packages``, with their bytecode compiled (the root filesystem is
  read-only: nothing could be cached at run time);
* ``/etc/passwd`` and ``/etc/group`` with ``nobody`` (65534), an empty ``/tmp``.

It is written to a temporary tar file and given to the Docker Engine as
``docker import`` does (``POST /images/create?fromSrc=-``). Linux only.
"""

from __future__ import annotations

import importlib.util
import io
import os
import re
import subprocess
import sys
import sysconfig
import tarfile
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import IO, Any

from ..errors import ConfigurationError

__all__ = ["OTEL_DISTRIBUTIONS", "RootFs", "build_image", "collect_rootfs", "write_rootfs"]

#: What ``--otel`` adds (with their requirements): the SDK a traced call needs inside.
OTEL_DISTRIBUTIONS = ("opentelemetry-sdk",)

# Parts of the standard library a task never needs (and the base site-packages:
# the image's site-packages holds exactly what is selected).
_STDLIB_SKIP = frozenset(
    {"test", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3", "site-packages"}
)
_LDD_LINE = re.compile(r"(?:=>\s*)?(/\S+)\s+\(0x[0-9a-f]+\)")
_REQ_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
_PASSWD = "root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/tmp:/sbin/nologin\n"
_GROUP = "root:x:0:\nnogroup:x:65534:\n"


@dataclass
class RootFs:
    """What goes into the image: image path -> host path (files), and generated files."""

    files: dict[str, Path] = field(default_factory=dict)
    generated: dict[str, bytes] = field(default_factory=dict)
    symlinks: dict[str, str] = field(default_factory=dict)
    sources: list[tuple[str, Path]] = field(default_factory=list)  # .py to compile

    def add_file(self, image_path: str, host: Path) -> None:
        self.files.setdefault(image_path, host)


def _interpreter() -> Path:
    exe = Path(sys.base_prefix) / "bin" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
    if not exe.exists():
        exe = Path(os.path.realpath(sys.executable))
    return exe


def _walk(root: Path, skip: frozenset[str] = frozenset()) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in skip]
        for name in filenames:
            yield Path(dirpath) / name


def _needs_libs(path: Path) -> bool:
    return path.suffix == ".so" or ".so." in path.name


def _ldd(paths: Iterable[Path]) -> set[Path]:
    """The shared libraries ``paths`` link, transitively (``ldd`` resolves the closure)."""
    found: set[Path] = set()
    batch = [str(p) for p in paths]
    for start in range(0, len(batch), 64):
        out = subprocess.run(
            ["ldd", *batch[start : start + 64]], capture_output=True, text=True, check=False
        ).stdout
        for line in out.splitlines():
            match = _LDD_LINE.search(line)
            if match:
                found.add(Path(match.group(1)))
    return found


def _requirements(dist: metadata.Distribution) -> list[str]:
    names = []
    for requirement in dist.requires or []:
        if "extra ==" in requirement.replace("'", '"').replace('"', ""):
            continue
        marker = requirement.partition(";")[2].strip()
        if marker and not _marker_holds(marker):
            continue
        match = _REQ_NAME.match(requirement)
        if match:
            names.append(match.group(1))
    return names


def _marker_holds(marker: str) -> bool:
    # Markers of runtime dependencies are about the interpreter (python_version <
    # "3.13"...): evaluate the common ones, keep the dependency when unsure.
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    match = re.fullmatch(r'python_version\s*(<|<=|>|>=|==|!=)\s*["\']([\d.]+)["\']', marker)
    if match is None:
        return True
    op, bound = match.groups()
    key = tuple(int(x) for x in version.split("."))
    limit = tuple(int(x) for x in bound.split("."))
    return {
        "<": key < limit,
        "<=": key <= limit,
        ">": key > limit,
        ">=": key >= limit,
        "==": key == limit,
        "!=": key != limit,
    }[op]


def _key(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _distributions(root: str, skip: frozenset[str]) -> list[metadata.Distribution]:
    """``root`` and every distribution it requires at run time (no extras), but ``skip``."""
    seen: dict[str, metadata.Distribution] = {}
    todo = [root]
    while todo:
        name = todo.pop()
        key = _key(name)
        if key in seen or key in skip:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # a dependency satisfied otherwise (the standard library)
        seen[key] = dist
        todo.extend(_requirements(dist))
    return list(seen.values())


def _add_module(fs: RootFs, name: str, site: str) -> None:
    """Copy the importable module or package ``name`` into the image's site-packages."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError) as exc:
        raise ConfigurationError(
            f"module {name!r} cannot be found: {exc}",
            hint="Name a module importable from this environment (python -c 'import M').",
        ) from exc
    if spec is None or spec.origin in (None, "built-in", "frozen"):
        raise ConfigurationError(
            f"module {name!r} is not importable from files here",
            hint="Install it in this environment, or run from the directory that holds it.",
        )
    top = name.split(".")[0]
    if top != name:
        _add_module(fs, top, site)
        return
    if spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            base = Path(location)
            for path in _walk(base, frozenset({"__pycache__"})):
                rel = path.relative_to(base.parent)
                _add_site_file(fs, site, rel.as_posix(), path)
    else:
        origin = Path(spec.origin)
        _add_site_file(fs, site, origin.name, origin)


def _add_site_file(fs: RootFs, site: str, rel: str, host: Path) -> None:
    if host.suffix == ".pyc" or "/__pycache__/" in f"/{rel}":
        return
    image_path = f"{site}/{rel}"
    fs.add_file(image_path, host)
    if host.suffix == ".py":
        fs.sources.append((image_path, host))


def collect_rootfs(
    modules: Sequence[str] = (),
    *,
    include: Sequence[str] = ("aioflow",),
    exclude: Sequence[str] = ("rich",),
) -> RootFs:
    """Decide what the image holds (see the module documentation).

    Args:
        modules: further importable modules (the tasks' own code) to copy.
        include: distributions copied with their runtime requirements.
        exclude: distributions left out with the requirements only they bring. By
            default ``rich``: only aioflow's command line uses it, and without it
            structlog imports in half the time (a cold container starts faster).

    Raises:
        ConfigurationError: not on Linux, or a module cannot be found.
    """
    if not sys.platform.startswith("linux"):
        raise ConfigurationError(
            "build-image packs this Linux Python installation; it runs on Linux only",
            hint="Build the image from a Dockerfile instead (see docs/containers.md).",
        )
    fs = RootFs()
    prefix = Path(sys.base_prefix)
    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    stdlib = prefix / "lib" / version
    site = f"{stdlib}/site-packages"
    exe = _interpreter()
    fs.add_file(str(exe), exe)
    fs.symlinks["/usr/local/bin/python"] = str(exe)
    fs.symlinks["/usr/local/bin/python3"] = str(exe)
    libdir = sysconfig.get_config_var("LIBDIR")
    ldlibrary = sysconfig.get_config_var("LDLIBRARY")
    if libdir and ldlibrary and (Path(libdir) / ldlibrary).exists():
        shared = Path(libdir) / ldlibrary
        for candidate in Path(libdir).glob(f"{ldlibrary}*"):
            fs.add_file(str(candidate), Path(os.path.realpath(candidate)))
        fs.add_file(str(shared), Path(os.path.realpath(shared)))
    for path in _walk(stdlib, _STDLIB_SKIP | {f"config-{sys.version_info[0]}"}):
        if path.parent.name.startswith("config-") or path.name.startswith("_tkinter"):
            continue
        fs.add_file(str(path), path)
    # aioflow itself may be an editable install: copy the package from where it imports.
    skip = frozenset(_key(name) for name in exclude)
    for dist in [d for name in include for d in _distributions(name, skip)]:
        for file in dist.files or ():
            rel = file.as_posix()
            if rel.startswith("..") or rel.endswith(".pth") or "__editable__" in rel:
                continue
            _add_site_file(fs, site, rel, Path(str(dist.locate_file(file))))
    for name in include:
        if importlib.util.find_spec(name.replace("-", "_")) is not None:
            _add_module(fs, name.replace("-", "_"), site)
    for name in modules:
        _add_module(fs, name, site)
    binaries = [Path(p) for p in fs.files.values() if _needs_libs(Path(p))] + [exe]
    for lib in _ldd(binaries):
        fs.add_file(str(lib), Path(os.path.realpath(lib)))
    fs.generated["/etc/passwd"] = _PASSWD.encode()
    fs.generated["/etc/group"] = _GROUP.encode()
    return fs


def _pyc(source: Path) -> bytes | None:
    """Unchecked hash-based bytecode of ``source`` (valid whatever the file's mtime)."""
    from importlib import _bootstrap_external

    data = source.read_bytes()
    try:
        code = compile(data, str(source), "exec", dont_inherit=True)
    except SyntaxError:
        return None
    source_hash = importlib.util.source_hash(data)
    make: Any = getattr(_bootstrap_external, "_code_to_hash_pyc")  # noqa: B009 - private
    pyc: bytes = bytes(make(code, source_hash, False))
    return pyc


def _dir_info(name: str, mode: int = 0o755) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name.lstrip("/"))
    info.type = tarfile.DIRTYPE
    info.mode = mode
    info.mtime = int(time.time())
    return info


def write_rootfs(fs: RootFs, out: IO[bytes]) -> None:
    """Write the root filesystem ``fs`` as an uncompressed tar to ``out``."""
    tag = sys.implementation.cache_tag
    pycs: dict[str, bytes] = {}
    for image_path, host in fs.sources:
        code = _pyc(host)
        if code is not None:
            path = Path(image_path)
            pycs[f"{path.parent}/__pycache__/{path.stem}.{tag}.pyc"] = code
    entries: dict[str, Path | bytes] = {**fs.files, **fs.generated, **pycs}
    dirs = {"/tmp", "/usr/local/bin", "/etc", "/dev", "/proc", "/sys"}
    for entry in [*entries, *fs.symlinks]:
        parent = Path(entry).parent
        while str(parent) != "/":
            dirs.add(str(parent))
            parent = parent.parent
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(dirs):
            tar.addfile(_dir_info(name, 0o1777 if name == "/tmp" else 0o755))
        for name, content in sorted(entries.items()):
            if isinstance(content, bytes):
                info = tarfile.TarInfo(name.lstrip("/"))
                info.size = len(content)
                info.mode = 0o644
                info.mtime = int(time.time())
                tar.addfile(info, io.BytesIO(content))
                continue
            st = content.stat()
            info = tarfile.TarInfo(name.lstrip("/"))
            info.size = st.st_size
            info.mode = 0o755 if st.st_mode & 0o111 else 0o644
            info.mtime = int(st.st_mtime)
            with content.open("rb") as fh:
                tar.addfile(info, fh)
        for name, target in sorted(fs.symlinks.items()):
            info = tarfile.TarInfo(name.lstrip("/"))
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)


async def build_image(
    tag: str,
    modules: Sequence[str] = (),
    *,
    docker_host: str | None = None,
    exclude: Sequence[str] = ("rich",),
    otel: bool = False,
) -> str:
    """Pack this environment (see the module documentation) into the image ``tag``.

    Args:
        tag: the image's ``name:tag``.
        modules: importable modules or packages to copy in (the tasks' code).
        docker_host: the engine (default ``DOCKER_HOST``).
        exclude: distributions to leave out (default ``rich``, for the CLI only).
        otel: add the OpenTelemetry SDK (:data:`OTEL_DISTRIBUTIONS`), so that traced
            calls are traced inside the container.

    Returns:
        The new image's id.

    Raises:
        ConfigurationError: not on Linux, a module cannot be found, a bad tag, or
            ``otel`` without the SDK installed here (``pip install "aioflow[otel]"``).
        BackendUnavailableError: the Docker Engine cannot be reached.
        ContainerError: the engine refused the import.
    """
    import tempfile

    import anyio.to_thread

    from .._optional import require
    from ._docker_errors import engine_error

    aiodocker = require("aiodocker", feature="aioflow containers build-image")
    repo, _, version = tag.rpartition(":") if ":" in tag.rpartition("/")[2] else (tag, "", "")
    if not repo:
        raise ConfigurationError(f"not an image tag: {tag!r}", hint="For example myimage:1.")
    include = ["aioflow"]
    if otel:
        for name in OTEL_DISTRIBUTIONS:
            try:
                metadata.distribution(name)
            except metadata.PackageNotFoundError:
                raise ConfigurationError(
                    f"--otel: the distribution {name!r} is not installed here",
                    hint='pip install "aioflow[otel]" in the environment the image is made of.',
                ) from None
            include.append(name)
    fs = await anyio.to_thread.run_sync(
        lambda: collect_rootfs(modules, include=include, exclude=exclude)
    )
    with tempfile.TemporaryFile(prefix="aioflow-rootfs-") as tar:
        await anyio.to_thread.run_sync(write_rootfs, fs, tar)
        tar.seek(0)
        try:
            async with aiodocker.Docker(url=docker_host) as docker:
                params = {"fromSrc": "-", "repo": repo, "tag": version or "latest"}
                async with docker._query_chunked_post(
                    "images/create",
                    params=params,
                    data=tar,
                    headers={"Content-Type": "application/x-tar"},
                ) as response:
                    body = await response.text()
                for line in body.splitlines():
                    if '"error"' in line:
                        raise ConfigurationError(f"the Docker Engine refused the image: {line}")
                image = await docker.images.inspect(f"{repo}:{version or 'latest'}")
        except ConfigurationError:
            raise
        except Exception as exc:
            raise engine_error(exc, f"the import of image {tag!r}", image=None) from exc
    image_id: str = image["Id"]
    return image_id
