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

Every file a run reads is verified **by content** each time it is located: no hash is trusted
from an earlier look at the same (path, size, mtime), because a file changed in place with both
kept (bit rot, ``cp -p`` over it, a restored backup) would then be accepted and its run would log
the pinned sha256 as checked. The cost is small next to parsing: sha256 of a 560 MB file (the size
of ml-20m's ratings.csv, 533 MB) takes 0.37 s on one core of the reference machine (Xeon with SHA
extensions, OpenSSL 3.0, file in the page cache; about 1.5 GB/s), while pandas needs seconds to parse
it. ``<cache>/verified.json`` only keeps the sha256 of archive members recorded at extraction from a
verified archive (the reference a member without a pinned hash is checked against).
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
        name: the portable name of ``path`` (``<mirror>/...``, ``<cache>/...``), what logs show;
            empty: derived from ``path`` by :func:`portable_file_name`.
    """

    dataset: str
    key: str
    path: Path
    sha256: str
    origin: str
    check: str
    name: str = ""

    def to_dict(self) -> dict[str, str]:
        """The record logged with a run (datasheet, source): no absolute path of this machine."""
        return {
            "key": self.key,
            "file": self.name or portable_file_name(self.path),
            "sha256": self.sha256,
            "origin": self.origin,
            "check": self.check,
        }


#: How a logged file name shows the mirror folder, the cache folder and any other folder of this
#: machine (:mod:`benchmark.portable` applies the same names to whole texts, for reports).
MIRROR = "<mirror>"
CACHE = "<cache>"
LOCAL = "<local>"


def portable_file_name(path: str | Path, *, mirror: Path | None = None, cache: Path | None = None) -> str:
    """How logs and artifacts name a data file: never by an absolute path of this machine.

    A file under the mirror is ``<mirror>/relative/name``, one under the cache ``<cache>/...``, one
    under the working directory its path relative to it, anything else ``<local>/name`` (see
    :func:`benchmark.portable.portable_path`, which reports apply to old runs too).

    Args:
        path: the file.
        mirror: the mirror folder used (default ``REPROREC_MIRROR``).
        cache: the cache folder used (default :func:`cache_root`).
    """
    absolute = Path(os.path.abspath(path))
    for label, root in ((MIRROR, mirror), (CACHE, cache)):
        if root is None:
            continue
        for a, b in ((absolute, Path(os.path.abspath(root))), (absolute.resolve(), root.resolve())):
            if a.is_relative_to(b):
                return f"{label}/{a.relative_to(b).as_posix()}"
    cwd = Path.cwd()
    for a, b in ((absolute, cwd), (absolute.resolve(), cwd.resolve())):
        if a.is_relative_to(b):
            return a.relative_to(b).as_posix()
    return f"{LOCAL}/{absolute.name}"


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
    """sha256 of extracted archive members recorded at extraction, persisted as JSON in the cache.

    A member without a pinned sha256 is checked against the hash recorded when it was extracted from
    a verified archive. Entries are never a reason to skip hashing a file (see the module docstring).
    """

    _lock = threading.Lock()

    def __init__(self, root: Path) -> None:
        self.file = root / "verified.json"
        self.entries: dict[str, dict[str, Any]] = {}
        with contextlib.suppress(OSError, ValueError):
            loaded = json.loads(self.file.read_text(encoding="utf-8"))
            if isinstance(loaded, dict):
                self.entries = loaded

    def recorded(self, path: Path) -> dict[str, Any] | None:
        """The entry recorded for ``path`` (whatever its size and mtime now), or None."""
        return self.entries.get(str(path.resolve()))

    def record(self, path: Path, sha: str, **extra: Any) -> None:
        st = path.stat()
        with self._lock:
            self.entries[str(path.resolve())] = {
                "size": st.st_size,
                "mtime_ns": st.st_mtime_ns,
                "sha256": sha,
                **extra,
            }
            with contextlib.suppress(OSError):  # a read-only cache: the member is re-extracted next time
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


# ---------------------------------------------------------------------------------------------- download
#: Set to 1 to never download (a cluster node without network): a missing file fails at once with
#: the fix (URL, cache path, ``REPROREC_MIRROR``, ``reprorec-data fetch``) instead of timing out.
ENV_OFFLINE = "REPROREC_OFFLINE"
#: Seconds a download waits for a server's answer (connect or read) before trying the next URL.
DOWNLOAD_TIMEOUT_S = 60.0


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
    if os.environ.get(ENV_OFFLINE, "").strip() not in ("", "0"):
        raise ResourceUnavailableError(f"downloads are disabled ({ENV_OFFLINE}=1)")
    errors: list[str] = []
    for url in urls:
        try:
            with atomic_path(dest) as tmp:
                h = hashlib.sha256()
                resp_ = urlopen(url, timeout=DOWNLOAD_TIMEOUT_S)
                with contextlib.closing(resp_) as resp, open(tmp, "wb") as fh:
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
def download_path(dataset: str, key: str, *, cache_dir: str | Path | None = None) -> Path | None:
    """Where a download of resource ``key`` is written (the archive for members); None: no URL.

    A file put there by hand (downloaded elsewhere) is used as if downloaded: it is verified first.
    """
    res = get_dataset_info(dataset).resource(key)
    if not res.urls:
        return None
    root = cache_root(cache_dir) / dataset
    return _archive_path(root, res) if res.member else root / key / res.filename


def fix_hint(
    dataset: str, key: str, *, mirror: str | Path | None = None, cache_dir: str | Path | None = None
) -> str:
    """How to make resource ``key`` of ``dataset`` available without this process downloading it.

    Names the URL and pinned sha256 to download, the cache path to put the file at, the mirror path
    under ``REPROREC_MIRROR`` and ``reprorec-data fetch`` (e.g. run where the network is reachable).
    """
    res = get_dataset_info(dataset).resource(key)
    mroot = mirror_root(mirror)
    ways: list[str] = []
    dest = download_path(dataset, key, cache_dir=cache_dir)
    if dest is not None:
        pin = f" (sha256 {res.sha256})" if res.sha256 else ""
        ways.append(f"download {res.urls[0]}{pin} and put it at {dest}")
    if res.mirror:
        now = f"now {mroot}, which lacks it" if mroot is not None else "not set now"
        ways.append(f"set REPROREC_MIRROR to a dataset mirror folder holding {res.mirror} ({now})")
    if res.urls:
        ways.append(
            f"run `reprorec-data fetch {dataset}` where the network is reachable, with REPROREC_CACHE "
            f"pointing at the cache folder {cache_root(cache_dir)} (or copy its {dataset}/ folder here)"
        )
    return "to fix: " + "; or ".join(ways) if ways else "no way to obtain it is registered"


def _unavailable(
    info: DatasetInfo,
    key: str,
    res: Resource,
    mirror: Path | None,
    *,
    cache_dir: Path | None = None,
    reason: str | None = None,
) -> ResourceUnavailableError:
    where = f"mirror path {res.mirror}" if res.mirror else "no mirror path"
    if not res.urls:
        hint = (
            f"it has no download URL and is only available in the offline mirror ({where}); set "
            "REPROREC_MIRROR to the mirror folder"
        )
    else:
        why = f"the download failed ({reason})" if reason else "downloads are disabled"
        hint = f"{why}; {fix_hint(info.name, key, mirror=mirror, cache_dir=cache_dir)}"
    return ResourceUnavailableError(
        f"resource {key!r} of dataset {info.name!r} is not in the mirror"
        f" ({mirror if mirror else 'REPROREC_MIRROR not set'}) nor in the cache; {hint}"
    )


def _download(info: DatasetInfo, key: str, res: Resource, dest: Path, mroot: Path | None, croot: Path) -> str:
    """:func:`download` whose failure names the resource and says how to fix it (offline first use)."""
    try:
        return download(res.urls, dest, sha256=res.sha256, size=res.size, desc=f"{info.name}/{key}")
    except ResourceUnavailableError as exc:
        raise _unavailable(info, key, res, mroot, cache_dir=croot, reason=str(exc)) from None


def cache_path(dataset: str, key: str, *, cache_dir: str | Path | None = None) -> Path:
    """Where the cache keeps resource ``key`` (the extracted member for archives)."""
    res = get_dataset_info(dataset).resource(key)
    root = cache_root(cache_dir) / dataset
    if res.member:
        return _archive_path(root, res).with_name(_archive_path(root, res).name + ".d") / res.member
    return root / key / res.filename


def _archive_path(root: Path, res: Resource) -> Path:
    return root / "archives" / res.urls[0].rsplit("/", 1)[-1]


def local_copy(
    dataset: str, key: str, *, mirror: str | Path | None = None, cache_dir: str | Path | None = None
) -> Path | None:
    """A local file of resource ``key`` (mirror copy, cached file, member or its archive), unverified.

    A cheap presence check (no hashing) for checks that run before the work: whatever it returns is
    verified by content when :func:`locate_resource` reads it.
    """
    info = get_dataset_info(dataset)
    res = info.resource(key)
    mroot = mirror_root(mirror)
    if mroot is not None and res.mirror is not None and (mroot / res.mirror).is_file():
        return mroot / res.mirror
    candidates = [cache_path(dataset, key, cache_dir=cache_dir)]
    if res.member:
        candidates.append(_archive_path(cache_root(cache_dir) / dataset, res))
    return next((p for p in candidates if p.is_file()), None)


def locate_resource(
    dataset: str,
    key: str,
    *,
    mirror: str | Path | None = None,
    cache_dir: str | Path | None = None,
    allow_download: bool = True,
) -> LocatedFile:
    """Return a verified local copy of resource ``key`` of ``dataset`` (see the module docstring).

    Every call hashes the file it returns: the sha256 recorded in :class:`LocatedFile` is that of
    the bytes on disk now.

    Raises:
        UnknownNameError: unknown dataset or resource.
        ChecksumError: a mirror or downloaded file does not have its pinned sha256.
        ResourceUnavailableError: the file is not local and cannot be downloaded (the message says
            what to download, where to put it, ``REPROREC_MIRROR`` and ``reprorec-data fetch``).
    """
    info = get_dataset_info(dataset)
    res = info.resource(key)
    mroot = mirror_root(mirror)
    croot = cache_root(cache_dir)

    if mroot is not None and res.mirror is not None:
        mpath = mroot / res.mirror
        if mpath.is_file():
            assert res.mirror_sha256 is not None
            actual = sha256_file(mpath)
            if actual != res.mirror_sha256:
                raise ChecksumError(str(mpath), res.mirror_sha256, actual)
            return LocatedFile(
                dataset, key, mpath, actual, "mirror", "mirror sha256", name=f"<mirror>/{res.mirror}"
            )

    if res.member:
        return _locate_member(info, key, res, croot, _store(croot), allow_download, mroot)

    path = croot / dataset / key / res.filename
    name = f"<cache>/{dataset}/{key}/{res.filename}"
    expected = res.sha256 if res.urls else res.mirror_sha256
    check = "file sha256" if res.urls else "mirror sha256"
    if path.is_file():
        actual = sha256_file(path)
        if actual == expected:
            return LocatedFile(dataset, key, path, actual, "cache", check, name=name)
        if not res.urls or not allow_download:
            raise ChecksumError(str(path), str(expected), actual)
        # A corrupt cached copy is replaced only by a download that verifies.
    if not res.urls or not allow_download:
        raise _unavailable(info, key, res, mroot, cache_dir=croot)
    actual = _download(info, key, res, path, mroot, croot)
    return LocatedFile(dataset, key, path, actual, "download", check, name=name)


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
    name = f"<cache>/{member.relative_to(croot).as_posix()}"
    check = res.check

    if member.is_file():
        actual = sha256_file(member)
        if res.member_sha256 is not None:
            if actual == res.member_sha256:
                return LocatedFile(info.name, key, member, actual, "cache", check, name=name)
        else:
            e = store.recorded(member)
            if e is not None and e.get("from_archive") == res.sha256 and e.get("sha256") == actual:
                return LocatedFile(info.name, key, member, actual, "cache", check, name=name)
        # changed since it was extracted: extracted again below from the verified archive

    origin = "cache"
    if not (archive.is_file() and sha256_file(archive) == res.sha256):
        if not allow_download:
            raise _unavailable(info, key, res, mroot, cache_dir=croot)
        _download(info, key, res, archive, mroot, croot)
        origin = "download"
    safe_extract(archive, extracted)
    if not member.is_file():
        raise DataError("archive does not contain the expected member", file=str(archive), value=res.member)
    actual = sha256_file(member)
    if res.member_sha256 is not None and actual != res.member_sha256:
        shutil.rmtree(extracted, ignore_errors=True)
        raise ChecksumError(f"{archive}:{res.member}", res.member_sha256, actual)
    store.record(member, actual, from_archive=res.sha256)
    return LocatedFile(info.name, key, member, actual, origin, check, name=name)


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
            e = _store(croot).recorded(member)
            expected = None if e is None else str(e["sha256"])
        yield "cache", member, expected
    else:
        yield "cache", root / key / res.filename, res.sha256 if res.urls else res.mirror_sha256
