"""Fetching without network: file:// URLs and a monkeypatched opener, toy datasets registered for the test."""

from __future__ import annotations

import hashlib
import io
import tarfile
import zipfile
from pathlib import Path
from typing import Any, ClassVar

import pytest

from benchmark.data import fetch
from benchmark.data.datasets import DATASETS, DatasetInfo, Resource, Variant
from benchmark.data.fetch import (
    ResourceUnavailableError,
    download,
    fetch_resource,
    locate_resource,
    safe_extract,
    verify_dataset,
)
from benchmark.errors import ChecksumError, DataError

GOOD = b"1\t10\t5\n2\t10\t3\n"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def register(monkeypatch: pytest.MonkeyPatch, resources: dict[str, Resource]) -> None:
    info = DatasetInfo(
        name="toy",
        title="toy",
        homepage="",
        citation="",
        license="",
        resources=resources,
        variants=(
            Variant("v", ("ratings",), "delimited", {"sep": "\t", "names": ["user", "item", "rating"]}),
        ),
    )
    monkeypatch.setitem(DATASETS, "toy", info)


@pytest.fixture
def dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path, Path]:
    """(upstream folder served by file:// URLs, mirror, cache); env defaults cleared."""
    up, mirror, cache = tmp_path / "upstream", tmp_path / "mirror", tmp_path / "cache"
    for d in (up, mirror, cache):
        d.mkdir()
    monkeypatch.delenv("REPROREC_MIRROR", raising=False)
    monkeypatch.setenv("REPROREC_CACHE", str(cache))
    return up, mirror, cache


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.name.endswith(".tmp"))


def test_download_via_file_url_lands_verified_in_cache_then_is_reused(dirs, monkeypatch) -> None:
    up, _, cache = dirs
    (up / "r.tsv").write_bytes(GOOD)
    register(monkeypatch, {"ratings": Resource(urls=((up / "r.tsv").as_uri(),), sha256=sha(GOOD))})
    first = locate_resource("toy", "ratings")
    assert first.origin == "download" and first.path.read_bytes() == GOOD
    assert first.path.is_relative_to(cache) and first.sha256 == sha(GOOD)
    (up / "r.tsv").unlink()  # a second call must not need the network
    second = locate_resource("toy", "ratings")
    assert second.origin == "cache" and second.path == first.path
    assert leftovers(cache) == []


def test_checksum_mismatch_refused_and_nothing_written(dirs, monkeypatch) -> None:
    up, _, cache = dirs
    (up / "r.tsv").write_bytes(b"tampered\n")
    register(monkeypatch, {"ratings": Resource(urls=((up / "r.tsv").as_uri(),), sha256=sha(GOOD))})
    with pytest.raises(ChecksumError) as err:
        fetch_resource("toy", "ratings")
    assert err.value.expected == sha(GOOD) and err.value.actual == sha(b"tampered\n")
    assert "r.tsv" in str(err.value)
    assert [p for p in cache.rglob("*") if p.is_file() and p.name != "verified.json"] == []


def test_bad_download_never_overwrites_a_good_cached_file(tmp_path: Path) -> None:
    dest = tmp_path / "cache" / "r.tsv"
    dest.parent.mkdir()
    dest.write_bytes(GOOD)
    bad = tmp_path / "bad.tsv"
    bad.write_bytes(b"evil")
    with pytest.raises(ChecksumError):
        download([bad.as_uri()], dest, sha256=sha(GOOD))
    assert dest.read_bytes() == GOOD and leftovers(tmp_path) == []


def test_interrupted_download_leaves_no_partial_file(tmp_path: Path, monkeypatch) -> None:
    class Broken(io.BytesIO):
        headers: ClassVar[dict[str, str]] = {"Content-Length": "100"}

        def read(self, n: int = -1) -> bytes:
            if self.tell() >= 4:
                raise ConnectionResetError("peer reset")
            return super().read(4)

    monkeypatch.setattr(fetch, "urlopen", lambda url, **kw: Broken(b"12345678"))
    dest = tmp_path / "r.tsv"
    with pytest.raises(ResourceUnavailableError, match="peer reset"):
        download(["https://example.invalid/r.tsv"], dest, sha256=sha(GOOD))
    assert not dest.exists() and list(tmp_path.iterdir()) == []


def test_opener_is_monkeypatchable_and_second_url_is_tried(tmp_path: Path, monkeypatch) -> None:
    calls: list[str] = []

    def opener(url: str, **kw: Any) -> Any:
        calls.append(url)
        if "first" in url:
            raise OSError("unreachable")
        return io.BytesIO(GOOD)

    monkeypatch.setattr(fetch, "urlopen", opener)
    digest = download(
        ["https://first.invalid/a", "https://second.invalid/a"], tmp_path / "a", sha256=sha(GOOD)
    )
    assert digest == sha(GOOD) and calls == ["https://first.invalid/a", "https://second.invalid/a"]


def test_mirror_is_used_first_and_verified(dirs, monkeypatch) -> None:
    _, mirror, _ = dirs
    (mirror / "toy").mkdir()
    (mirror / "toy" / "r.tsv").write_bytes(GOOD)
    register(
        monkeypatch,
        {
            "ratings": Resource(
                urls=("https://example.invalid/r.tsv",),
                sha256=sha(b"other"),
                mirror="toy/r.tsv",
                mirror_sha256=sha(GOOD),
            )
        },
    )
    monkeypatch.setattr(fetch, "urlopen", lambda url, **kw: pytest.fail("network used although mirrored"))
    f = locate_resource("toy", "ratings", mirror=mirror)
    assert f.origin == "mirror" and f.path == mirror / "toy" / "r.tsv" and f.check == "mirror sha256"
    monkeypatch.setenv("REPROREC_MIRROR", str(mirror))
    assert fetch_resource("toy", "ratings") == mirror / "toy" / "r.tsv"


def test_mirror_with_wrong_content_is_refused(dirs, monkeypatch) -> None:
    _, mirror, _ = dirs
    (mirror / "r.tsv").write_bytes(b"changed")
    register(monkeypatch, {"ratings": Resource(mirror="r.tsv", mirror_sha256=sha(GOOD))})
    with pytest.raises(ChecksumError) as err:
        fetch_resource("toy", "ratings", mirror=mirror)
    assert str(mirror / "r.tsv") in str(err.value) and sha(GOOD) in str(err.value)


def test_every_locate_hashes_the_mirror_file_once_by_content(dirs, monkeypatch) -> None:
    """No remembered hash: each use hashes the bytes once (a load that locates and reads a file
    does not hash it twice); the cost is measured in the module docstring."""
    _, mirror, _ = dirs
    p = mirror / "r.tsv"
    p.write_bytes(GOOD)
    register(monkeypatch, {"ratings": Resource(mirror="r.tsv", mirror_sha256=sha(GOOD))})
    count = {"n": 0}
    real = fetch.sha256_file

    def counting(path: Any) -> str:
        count["n"] += 1
        return real(path)

    monkeypatch.setattr(fetch, "sha256_file", counting)
    for _ in range(3):
        fetch_resource("toy", "ratings", mirror=mirror)
    assert count["n"] == 3


def test_mirror_only_resource_missing_says_so(dirs, monkeypatch) -> None:
    _, mirror, _ = dirs
    register(monkeypatch, {"ratings": Resource(mirror="toy/only_here.gz", mirror_sha256=sha(GOOD))})
    with pytest.raises(ResourceUnavailableError) as err:
        fetch_resource("toy", "ratings", mirror=mirror)
    assert "only available in the offline mirror" in str(err.value) and "toy/only_here.gz" in str(err.value)


def make_zip(path: Path, members: dict[str, bytes]) -> bytes:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path.read_bytes()


def test_archive_is_verified_then_member_extracted(dirs, monkeypatch) -> None:
    up, _, cache = dirs
    data = make_zip(up / "toy.zip", {"toy/ratings.tsv": GOOD, "toy/README": b"hi"})
    register(
        monkeypatch,
        {"ratings": Resource(urls=((up / "toy.zip").as_uri(),), sha256=sha(data), member="toy/ratings.tsv")},
    )
    f = locate_resource("toy", "ratings")
    assert f.origin == "download" and f.path.read_bytes() == GOOD and f.check == "archive sha256"
    assert (f.path.parent / "README").read_bytes() == b"hi"
    (up / "toy.zip").unlink()
    assert locate_resource("toy", "ratings").origin == "cache"
    assert leftovers(cache) == []


def test_member_checksum_mismatch_is_refused_and_extraction_removed(dirs, monkeypatch) -> None:
    up, _, _ = dirs
    data = make_zip(up / "toy.zip", {"toy/ratings.tsv": b"not the pinned member"})
    register(
        monkeypatch,
        {
            "ratings": Resource(
                urls=((up / "toy.zip").as_uri(),),
                sha256=sha(data),
                member="toy/ratings.tsv",
                member_sha256=sha(GOOD),
            )
        },
    )
    with pytest.raises(ChecksumError) as err:
        fetch_resource("toy", "ratings")
    assert "toy/ratings.tsv" in str(err.value)
    assert not fetch.cache_path("toy", "ratings").exists()


def test_zip_with_parent_path_member_is_refused_before_writing(tmp_path: Path) -> None:
    make_zip(tmp_path / "evil.zip", {"ok.txt": b"fine", "../escaped.txt": b"gotcha"})
    dest = tmp_path / "out" / "x"
    with pytest.raises(DataError, match=r"escapes the target folder"):
        safe_extract(tmp_path / "evil.zip", dest)
    assert not (tmp_path / "out" / "escaped.txt").exists() and not dest.exists()


def test_zip_with_absolute_member_is_refused(tmp_path: Path) -> None:
    make_zip(tmp_path / "abs.zip", {"/tmp/abs_member.txt": b"x"})
    with pytest.raises(DataError, match="absolute path"):
        safe_extract(tmp_path / "abs.zip", tmp_path / "out")


def add_tar_link(tf: tarfile.TarFile, name: str, target: str) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.SYMTYPE
    info.linkname = target
    tf.addfile(info)


def test_tar_symlink_escaping_the_target_is_refused(tmp_path: Path) -> None:
    with tarfile.open(tmp_path / "evil.tar.gz", "w:gz") as tf:
        add_tar_link(tf, "data/link", "../../outside")
    with pytest.raises(DataError, match="link points outside"):
        safe_extract(tmp_path / "evil.tar.gz", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_tar_with_internal_link_and_files_extracts(tmp_path: Path) -> None:
    with tarfile.open(tmp_path / "ok.tar", "w") as tf:
        info = tarfile.TarInfo("d/a.txt")
        info.size = len(GOOD)
        tf.addfile(info, io.BytesIO(GOOD))
        add_tar_link(tf, "d/b.txt", "a.txt")
    out = safe_extract(tmp_path / "ok.tar", tmp_path / "out")
    assert (out / "d" / "b.txt").read_bytes() == GOOD


def test_verify_reports_ok_mismatch_and_missing(dirs, monkeypatch) -> None:
    up, mirror, cache = dirs
    (mirror / "r.tsv").write_bytes(GOOD)
    (up / "s.tsv").write_bytes(GOOD)
    register(
        monkeypatch,
        {
            "ratings": Resource(mirror="r.tsv", mirror_sha256=sha(GOOD)),
            "side": Resource(urls=((up / "s.tsv").as_uri(),), sha256=sha(GOOD)),
            "other": Resource(mirror="absent.tsv", mirror_sha256=sha(GOOD)),
        },
    )
    side = fetch_resource("toy", "side", mirror=mirror)
    side.write_bytes(b"corrupted later")  # same cache path, wrong content
    status = {r.key: r.status for r in verify_dataset("toy", mirror=mirror)}
    assert status == {"ratings": "OK", "side": "MISMATCH", "other": "missing"}
    # A corrupted cached copy is replaced by a download that verifies.
    assert locate_resource("toy", "side", mirror=mirror).origin == "download"
    assert side.read_bytes() == GOOD
    assert cache in side.parents


def two_variant_dataset(monkeypatch: pytest.MonkeyPatch, up: Path) -> None:
    """Like ml-1m: a mirror-only variant without timestamps and a downloadable upstream variant."""
    (up / "ratings.dat").write_bytes(b"1::10::5::100\n2::10::3::200\n")
    info = DatasetInfo(
        name="toy",
        title="toy",
        homepage="",
        citation="",
        license="",
        resources={
            "mirror_ratings": Resource(mirror="toy/r.tsv", mirror_sha256=sha(GOOD)),
            "ratings": Resource(
                urls=((up / "ratings.dat").as_uri(),), sha256=sha((up / "ratings.dat").read_bytes())
            ),
        },
        variants=(
            Variant(
                "mirror-v",
                ("mirror_ratings",),
                "delimited",
                {"sep": "\t", "names": ["user", "item", "rating"]},
            ),
            Variant(
                "upstream",
                ("ratings",),
                "delimited",
                {"sep": "::", "names": ["user", "item", "rating", "timestamp"]},
            ),
        ),
    )
    monkeypatch.setitem(DATASETS, "toy", info)


def test_variant_choice_prefers_local_mirror_and_records_it(dirs, monkeypatch) -> None:
    from benchmark.data.loading import load_dataset

    up, mirror, _ = dirs
    two_variant_dataset(monkeypatch, up)
    (mirror / "toy").mkdir()
    (mirror / "toy" / "r.tsv").write_bytes(GOOD)
    d = load_dataset("toy", mirror=mirror)
    assert d.source.variant == "mirror-v" and d.data.timestamps is None
    assert d.source.files[0]["origin"] == "mirror"
    up_d = load_dataset("toy", mirror=mirror, options={"variant": "upstream"})
    assert up_d.source.variant == "upstream" and up_d.data.timestamps.tolist() == [100, 200]
    assert up_d.source.files[0]["origin"] == "download"
    assert up_d.fingerprint != d.fingerprint  # variants differ (timestamps): so do fingerprints


def test_variant_choice_downloads_upstream_without_mirror(dirs, monkeypatch) -> None:
    from benchmark.data.loading import load_dataset

    up, _, _ = dirs
    two_variant_dataset(monkeypatch, up)
    d = load_dataset("toy")
    assert d.source.variant == "upstream" and d.source.files[0]["origin"] == "download"
    assert load_dataset("toy").source.files[0]["origin"] == "cache"
