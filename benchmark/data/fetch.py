"""Locate, download and verify dataset files: offline mirror first, then the cache, then the web.

Order (:func:`locate_resource`):

1. the offline mirror (``mirror`` argument or ``REPROREC_MIRROR``; layout of ``../shared/datasets``),
   checked against the pinned mirror sha256;
2. the cache (``cache_dir`` argument, ``REPROREC_CACHE``, else ``platformdirs.user_cache_dir("reprorec")``);
3. a download from the official URL into a temporary file next to its destination, hashed while it
   is written, renamed into place only when the sha256 matches. Archives are extracted into a
   temporary folder (every member name checked first: no absolute paths, no ``..``, no link that
   leaves the folder) which is then renamed; a pinned member sha256 is checked before use.

A bad file raises :class:`~benchmark.errors.ChecksumError` and never replaces a good cached file.
Hashes of large files are remembered by (path, size, mtime) in ``<cache>/verified.json`` so that
repeated loads do not re-hash them; ``verify_dataset`` always re-hashes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import stat
import tarfile
import threading
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import platformdirs
from tqdm.auto import tqdm

from benchmark.data.datasets import DatasetInfo, Resource, get_dataset_info
from benchmark.errors import ChecksumError, DataError
from benchmark.fingerprint import sha256_file
from benchmark.io import atomic_dir, atomic_path, atomic_write_text

_CHUNK = 1 << 20

# Indirection so that tests can replace the network with a local opener.
urlopen = urllib.request.urlopen


class ResourceUnavailableError(DataError):
    """A resource is neither in the mirror nor in the cache and cannot be downloaded."""


@dataclass(frozen=True)
class LocatedFile:
    """A verified local copy of a resource.

    Attributes:
        dataset: dataset name.
        key: resource key.
        path: the local file.
        sha256: its sha256 (verified against the pinned value, or recorded at extraction from a
            verified archive).
        origin: ``mirror``, ``cache`` or ``download``.
        check: which check was applied (e.g. ``mirror sha256``, ``archive sha256``).
    """

    dataset: str
    key: str
    path: Path
    sha256: str
    origin: str
    check: str

    def to_dict(self) -> dict[str, str]:
        return {
            "key": self.key,
            "file": str(self.path),
            "sha256": self.sha256,
            "origin": self.origin,
            "check": self.check,
        }


def mirror_root(mirror: str | Path | None = None) -> Path | None:
    """The mirror folder from the argument or ``REPROREC_MIRROR`` (None when neither is set)."""
    if mirror is not None:
        return Path(mirror)
    env = os.environ.get("REPROREC_MIRROR")
    return Path(env) if env else None


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """The cache folder from the argument, ``REPROREC_CACHE`` or the user's cache dir."""
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get("REPROREC_CACHE")
    return Path(env) if env else Path(platformdirs.user_cache_dir("reprorec"))


# ---------------------------------------------------------------------------------------------- hashes
class _StampStore:
    """sha256 of files remembered by (resolved path, size, mtime_ns), persisted as JSON in the cache."""

    _lock = threading.Lock()

    def __init__(self, root: Path) -> None:
        self.file = root / "verified.json"
        self.entries: dict[str, dict[str, Any]] = {}
        with contextlib.suppress(OSError, ValueError):
            loaded = json.loads(self.file.read_text(encoding="utf-8"))
            if isinstance(loaded, dict):
                self.entries = loaded

    @staticmethod
    def _stamp(path: Path) -> tuple[str, int, int]:
        st = path.stat()
        return str(path.resolve()), st.st_size, st.st_mtime_ns

    def lookup(self, path: Path) -> dict[str, Any] | None:
        key, size, mtime = self._stamp(path)
        e = self.entries.get(key)
        if e and e.get("size") == size and e.get("mtime_ns") == mtime:
            return e
        return None

    def record(self, path: Path, sha: str, **extra: Any) -> None:
        key, size, mtime = self._stamp(path)
        with self._lock:
            self.entries[key] = {"size": size, "mtime_ns": mtime, "sha256": sha, **extra}
            with contextlib.suppress(OSError):  # a read-only cache only loses the shortcut
                atomic_write_text(self.file, json.dumps(self.entries, indent=0, sort_keys=True))

    def forget(self, path: Path) -> None:
        with self._lock:
            self.entries.pop(str(path.resolve()), None)


_STORES: dict[Path, _StampStore] = {}


def _store(cache: Path) -> _StampStore:
    cache = cache.resolve()
    if cache not in _STORES:
        _STORES[cache] = _StampStore(cache)
    return _STORES[cache]


def _hash(path: Path, store: _StampStore) -> str:
    """sha256 of ``path``, from the stamp store when size and mtime are unchanged."""
    e = store.lookup(path)
    if e is not None:
        return str(e["sha256"])
    sha = sha256_file(path)
    store.record(path, sha)
    return sha


# ---------------------------------------------------------------------------------------------- download
def download(
    urls: tuple[str, ...] | list[str],
    dest: Path,
    *,
    sha256: str | None,
    size: int | None = None,
    desc: str = "",
) -> str:
    """Download the first reachable URL to ``dest`` atomically, verifying ``sha256`` before the rename.

    Returns:
        The sha256 of the written file.

    Raises:
        ChecksumError: the downloaded bytes do not have ``sha256`` (``dest`` is left untouched).
        ResourceUnavailableError: no URL could be read.
    """
    errors: list[str] = []
    for url in urls:
        try:
            with atomic_path(dest) as tmp:
                h = hashlib.sha256()
                with contextlib.closing(urlopen(url)) as resp, open(tmp, "wb") as fh:
                    total = resp.headers.get("Content-Length") if hasattr(resp, "headers") else None
                    with tqdm(
                        total=int(total) if total else size,
                        unit="B",
                        unit_scale=True,
                        desc=desc or dest.name,
                        disable=None,
                    ) as bar:
                        while chunk := resp.read(_CHUNK):
                            h.update(chunk)
                            fh.write(chunk)
                            bar.update(len(chunk))
                    fh.flush()
                    os.fsync(fh.fileno())
                actual = h.hexdigest()
                if sha256 is not None and actual != sha256:
                    raise ChecksumError(url, sha256, actual)
            return actual
        except ChecksumError:
            raise
        except OSError as exc:  # URLError is an OSError
            errors.append(f"{url}: {exc}")
    raise ResourceUnavailableError(
        "download failed: " + ("; ".join(errors) or "no URL registered"), file=str(dest)
    )


# ---------------------------------------------------------------------------------------------- extraction
def _check_member_name(name: str, archive: Path) -> PurePosixPath:
    p = PurePosixPath(name.replace("\\", "/"))
    if p.is_absolute() or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise DataError(
            "archive member has an absolute path; refusing to extract", file=str(archive), value=name
        )
    if ".." in p.parts:
        raise DataError(
            "archive member escapes the target folder ('..'); refusing to extract",
            file=str(archive),
            value=name,
        )
    return p


def _check_link(name: str, target: str, hard: bool, archive: Path) -> None:
    base = PurePosixPath(name).parent if not hard else PurePosixPath()
    t = PurePosixPath(target)
    parts: list[str] = []
    for part in (base / t).parts if not t.is_absolute() else ("/",):
        if part == "/":
            parts = [".."]  # absolute link targets always escape
            break
        if part == "..":
            if not parts:
                parts = [".."]
                break
            parts.pop()
        elif part != ".":
            parts.append(part)
    if parts[:1] == [".."]:
        raise DataError(
            "archive link points outside the target folder; refusing to extract",
            file=str(archive),
            value=f"{name} -> {target}",
        )


def safe_extract(archive: Path, dest: Path) -> Path:
    """Extract a zip or tar archive into ``dest`` (replaced atomically), refusing path escapes.

    Every member is checked before anything is written: absolute names, ``..`` components, links
    whose target leaves ``dest`` and device/fifo members make the whole archive rejected.

    Raises:
        DataError: the archive is malformed or a member would escape ``dest``.
    """
    with atomic_dir(dest) as tmp:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                for info in zf.infolist():
                    _check_member_name(info.filename, archive)
                    mode = info.external_attr >> 16
                    if stat.S_ISLNK(mode):
                        _check_link(info.filename, zf.read(info).decode("utf-8", "replace"), False, archive)
                        raise DataError(
                            "archive contains a symbolic link; refusing to extract",
                            file=str(archive),
                            value=info.filename,
                        )
                zf.extractall(tmp)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as tf:
                members = tf.getmembers()
                for m in members:
                    _check_member_name(m.name, archive)
                    if m.issym() or m.islnk():
                        _check_link(m.name, m.linkname, m.islnk(), archive)
                    elif not (m.isfile() or m.isdir()):
                        raise DataError(
                            "archive contains a device or fifo; refusing to extract",
                            file=str(archive),
                            value=m.name,
                        )
                tf.extractall(tmp, members=members, filter="data")
        else:
            raise DataError("not a zip or tar archive", file=str(archive))
    return dest


# ---------------------------------------------------------------------------------------------- locate
def _unavailable(info: DatasetInfo, key: str, res: Resource, mirror: Path | None) -> ResourceUnavailableError:
    where = f"mirror path {res.mirror}" if res.mirror else "no mirror path"
    hint = (
        f"it has no download URL and is only available in the offline mirror ({where}); set "
        "REPROREC_MIRROR to the mirror folder"
        if not res.urls
        else "downloads are disabled"
    )
    return ResourceUnavailableError(
        f"resource {key!r} of dataset {info.name!r} is not in the mirror"
        f" ({mirror if mirror else 'REPROREC_MIRROR not set'}) nor in the cache; {hint}"
    )


def cache_path(dataset: str, key: str, *, cache_dir: str | Path | None = None) -> Path:
    """Where the cache keeps resource ``key`` (the extracted member for archives)."""
    res = get_dataset_info(dataset).resource(key)
    root = cache_root(cache_dir) / dataset
    if res.member:
        return _archive_path(root, res).with_name(_archive_path(root, res).name + ".d") / res.member
    return root / key / res.filename


def _archive_path(root: Path, res: Resource) -> Path:
    return root / "archives" / res.urls[0].rsplit("/", 1)[-1]


def locate_resource(
    dataset: str,
    key: str,
    *,
    mirror: str | Path | None = None,
    cache_dir: str | Path | None = None,
    allow_download: bool = True,
) -> LocatedFile:
    """Return a verified local copy of resource ``key`` of ``dataset`` (see the module docstring).

    Raises:
        UnknownNameError: unknown dataset or resource.
        ChecksumError: a mirror or downloaded file does not have its pinned sha256.
        ResourceUnavailableError: the file is not local and cannot be downloaded.
    """
    info = get_dataset_info(dataset)
    res = info.resource(key)
    mroot = mirror_root(mirror)
    croot = cache_root(cache_dir)
    store = _store(croot)

    if mroot is not None and res.mirror is not None:
        mpath = mroot / res.mirror
        if mpath.is_file():
            assert res.mirror_sha256 is not None
            actual = _hash(mpath, store)
            if actual != res.mirror_sha256:
                raise ChecksumError(str(mpath), res.mirror_sha256, actual)
            return LocatedFile(dataset, key, mpath, actual, "mirror", "mirror sha256")

    if res.member:
        return _locate_member(info, key, res, croot, store, allow_download, mroot)

    path = croot / dataset / key / res.filename
    expected = res.sha256 if res.urls else res.mirror_sha256
    check = "file sha256" if res.urls else "mirror sha256"
    if path.is_file():
        actual = _hash(path, store)
        if actual == expected:
            return LocatedFile(dataset, key, path, actual, "cache", check)
        if not res.urls or not allow_download:
            raise ChecksumError(str(path), str(expected), actual)
        # A corrupt cached copy is replaced only by a download that verifies.
    if not res.urls or not allow_download:
        raise _unavailable(info, key, res, mroot)
    actual = download(res.urls, path, sha256=res.sha256, size=res.size, desc=f"{dataset}/{key}")
    store.record(path, actual)
    return LocatedFile(dataset, key, path, actual, "download", check)


def _locate_member(
    info: DatasetInfo,
    key: str,
    res: Resource,
    croot: Path,
    store: _StampStore,
    allow_download: bool,
    mroot: Path | None,
) -> LocatedFile:
    assert res.member is not None
    root = croot / info.name
    archive = _archive_path(root, res)
    extracted = archive.with_name(archive.name + ".d")
    member = extracted / res.member
    check = res.check

    if member.is_file():
        if res.member_sha256 is not None:
            actual = _hash(member, store)
            if actual == res.member_sha256:
                return LocatedFile(info.name, key, member, actual, "cache", check)
        else:
            e = store.lookup(member)
            if e is not None and e.get("from_archive") == res.sha256:
                return LocatedFile(info.name, key, member, str(e["sha256"]), "cache", check)

    origin = "cache"
    if not (archive.is_file() and _hash(archive, store) == res.sha256):
        if not allow_download:
            raise _unavailable(info, key, res, mroot)
        actual = download(res.urls, archive, sha256=res.sha256, size=res.size, desc=f"{info.name}/{key}")
        store.record(archive, actual)
        origin = "download"
    safe_extract(archive, extracted)
    if not member.is_file():
        raise DataError("archive does not contain the expected member", file=str(archive), value=res.member)
    actual = sha256_file(member)
    if res.member_sha256 is not None and actual != res.member_sha256:
        shutil.rmtree(extracted, ignore_errors=True)
        raise ChecksumError(f"{archive}:{res.member}", res.member_sha256, actual)
    store.record(member, actual, from_archive=res.sha256)
    return LocatedFile(info.name, key, member, actual, origin, check)


def fetch_resource(
    dataset: str,
    key: str,
    *,
    mirror: Path | None = None,
    cache_dir: Path | None = None,
) -> Path:
    """Return the path of a verified local copy of resource ``key`` of ``dataset``.

    Looks in the mirror, then the cache, else downloads (see :func:`locate_resource`).
    """
    return locate_resource(dataset, key, mirror=mirror, cache_dir=cache_dir).path


# ---------------------------------------------------------------------------------------------- verify
@dataclass(frozen=True)
class VerifyResult:
    """Outcome of re-hashing one local copy of a resource."""

    key: str
    path: Path | None
    where: str  # mirror | cache | archive
    expected: str | None
    actual: str | None

    @property
    def status(self) -> str:
        if self.path is None or self.actual is None:
            return "missing"
        if self.expected is None:
            return "unpinned"
        return "OK" if self.actual == self.expected else "MISMATCH"


def verify_dataset(
    dataset: str, *, mirror: str | Path | None = None, cache_dir: str | Path | None = None
) -> list[VerifyResult]:
    """Re-hash (ignoring remembered hashes) every local copy of every resource of ``dataset``."""
    info = get_dataset_info(dataset)
    mroot = mirror_root(mirror)
    croot = cache_root(cache_dir)
    out: list[VerifyResult] = []
    for key, res in info.resources.items():
        found = False
        for where, path, expected in _local_copies(info, key, res, mroot, croot):
            if path.is_file():
                found = True
                out.append(VerifyResult(key, path, where, expected, sha256_file(path)))
        if not found:
            out.append(VerifyResult(key, None, "-", None, None))
    return out


def _local_copies(
    info: DatasetInfo, key: str, res: Resource, mroot: Path | None, croot: Path
) -> Iterator[tuple[str, Path, str | None]]:
    if mroot is not None and res.mirror is not None:
        yield "mirror", mroot / res.mirror, res.mirror_sha256
    root = croot / info.name
    if res.member:
        archive = _archive_path(root, res)
        yield "archive", archive, res.sha256
        member = archive.with_name(archive.name + ".d") / res.member
        expected = res.member_sha256
        if expected is None:  # recorded at extraction from the verified archive
            e = _store(croot).entries.get(str(member.resolve()))
            expected = None if e is None else str(e["sha256"])
        yield "cache", member, expected
    else:
        yield "cache", root / key / res.filename, res.sha256 if res.urls else res.mirror_sha256
