"""Portable names for tracking stores and files in reports: no secret, no path of the reporting machine.

A report is committed, published and cited; it must not carry a database password nor the absolute
paths of the machine that made it (``/tmp/bench/mlflow.db``, ``/home/<user>/...``). Runs log what
their process saw (the command line as typed, the dataset file that was read), so the report side
rewrites every string it shows, at render time, which also cleans reports regenerated from old stores:

* a URI with a password becomes ``$MLFLOW_TRACKING_URI`` where it names the tracking store (a
  ``tracking.uri=`` / ``--tracking-uri`` argument, or the report's own store), else its password
  becomes ``***``;
* an absolute path under the dataset mirror (``$REPROREC_MIRROR``) or the cache (``$REPROREC_CACHE``,
  else the user cache folder) becomes ``<mirror>/...`` / ``<cache>/...``. Files that the dataset
  registry places in the mirror or the cache are recognised by their layout too (``.../movielens-100k/
  u.data`` is ``<mirror>/movielens-100k/u.data`` whatever the mirror folder was on the machine of the
  run), so a report does not depend on the environment of the machine that regenerates it;
* any other absolute path becomes a placeholder plus the file name (``<store>/mlflow.db`` for a
  tracking store, ``<local>/ratings.csv`` otherwise), or, only where asked (the ``reprorec-report``
  command line of the report itself), a path relative to the working directory when it lies under it.

The rewriting is idempotent: applying it to a portable text changes nothing.
"""

from __future__ import annotations

import functools
import os
import posixpath
import re
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlsplit

from benchmark.data.fetch import CACHE, LOCAL, MIRROR, cache_path, cache_root, mirror_root
from benchmark.redaction import redact_text, redact_url

#: The environment variable MLflow reads the tracking URI from.
TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
#: How a report names a tracking URI it must not print (it came from the environment or has a password).
TRACKING_URI_REF = "$" + TRACKING_URI_ENV
#: Placeholders for the folder of a file outside every known root.
STORE = "<store>"

# A URL token: scheme://... up to whitespace or a quote (a fragment such as #/experiments/1 included,
# so the paths inside URLs are never mistaken for file paths).
_URL = r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>`]*"
# An absolute POSIX path: a '/' that does not continue a word, a relative path (a/b, ./b, ~/b), a
# placeholder (<mirror>/b) or a variable ($HOME/b, ${HOME}/b, $(pwd)/b), followed by path characters.
_PATH = r"(?<![\w.~$<>/\\)}\]-])/[^\s'\"<>`,;|&()\[\]{}]+"
_TOKEN = re.compile(rf"(?P<url>{_URL})|(?P<path>{_PATH})")
# A tracking-store argument of reprorec (Hydra override), reprorec-report or an environment
# assignment, with the single quotes shlex put around the token or the value when it has any.
_TRACKING_ARG = re.compile(
    r"(?P<q>'?)(?P<key>\+{0,2}tracking\.uri=|--tracking-uri[= ]|" + TRACKING_URI_ENV + r"=)"
    rf"(?P<q2>'?)(?P<url>{_URL})(?P=q2)(?P=q)"
)
_SQLITE = re.compile(r"^(?P<scheme>sqlite(?:\+\w+)?:///)(?P<path>[^?#]*)(?P<rest>.*)$", re.S)


def has_password(url: str) -> bool:
    """Whether ``url`` carries a password (``scheme://user:password@host``), redacted or not."""
    try:
        return urlsplit(url).password is not None
    except ValueError:  # a malformed netloc (e.g. an invalid port): treat as secret, never print it
        return "@" in url


def sqlite_file(uri: str) -> str | None:
    """The database file of a ``sqlite:///`` URI as written (relative or absolute), else None.

    ``sqlite:///mlflow.db`` is ``mlflow.db`` relative to the working directory and
    ``sqlite:////abs/mlflow.db`` is ``/abs/mlflow.db`` (SQLAlchemy's convention); an in-memory
    database (``sqlite://``, ``sqlite:///:memory:``) has no file: None.
    """
    m = _SQLITE.match(uri)
    if m is None:
        return None
    path = unquote(m.group("path"))
    return None if path in ("", ":memory:") else path


def _variants(path: str) -> Iterator[PurePosixPath]:
    """``path`` made absolute, and its symlink-free form: a logged path may be either."""
    absolute = os.path.abspath(path)
    yield PurePosixPath(absolute)
    real = os.path.realpath(absolute)
    if real != absolute:
        yield PurePosixPath(real)


def _roots() -> list[tuple[str, PurePosixPath]]:
    """(placeholder, folder) of the mirror and the cache configured in this process."""
    out: list[tuple[str, PurePosixPath]] = []
    mirror = mirror_root()
    if mirror is not None:
        out += [(MIRROR, p) for p in _variants(str(mirror))]
    out += [(CACHE, p) for p in _variants(str(cache_root()))]
    return out


@functools.cache
def _layout_suffixes() -> tuple[tuple[str, str], ...]:
    """(placeholder, path below the root) of every registered dataset file, longest first.

    These are the paths the data layer builds (``<mirror>/<resource.mirror>``,
    ``<cache>/<dataset>/...``), so a logged path that ends with one names that file on whatever
    machine the run was made.
    """
    from benchmark.data.datasets import DATASETS

    out: set[tuple[str, str]] = set()
    for name, info in DATASETS.items():
        for key, res in info.resources.items():
            if res.mirror:
                out.add((MIRROR, res.mirror.strip("/")))
            out.add((CACHE, cache_path(name, key, cache_dir=Path()).as_posix()))
    return tuple(sorted(out, key=lambda x: (-len(x[1]), x)))


def _relative_to(path: PurePosixPath, root: PurePosixPath) -> str | None:
    if root == PurePosixPath("/"):  # everything is under '/': that says nothing portable
        return None
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return None


def portable_path(path: str, *, placeholder: str = LOCAL, cwd: Path | None = None) -> str:
    """A file or folder name that does not reveal the machine's layout.

    Args:
        path: a path as logged; relative paths are returned unchanged (they name nothing outside
            the folder they were used in).
        placeholder: the folder shown for an absolute path outside every known root.
        cwd: when given, an absolute path under this folder is returned relative to it (only for
            text that is not fingerprinted: the result depends on where the report is made).

    Returns:
        ``<mirror>/...``, ``<cache>/...``, a path relative to ``cwd``, or ``placeholder/<name>``.
    """
    if not path.startswith("/"):
        return path
    p = PurePosixPath(posixpath.normpath(path))
    for label, root in _roots():
        rel = _relative_to(p, root)
        if rel is not None:
            return label if rel == "." else f"{label}/{rel}"
    text = p.as_posix()
    for label, suffix in _layout_suffixes():
        if text.endswith("/" + suffix):
            return f"{label}/{suffix}"
    if cwd is not None:
        for root in _variants(str(cwd)):
            rel = _relative_to(p, root)
            if rel is not None:
                return rel
    return f"{placeholder}/{p.name}" if p.name else placeholder


def _redact(url: str) -> str:
    """``url`` with its password as ``***``; a placeholder when it cannot be told apart."""
    for out in (redact_url(url), redact_text(url)):
        try:
            if urlsplit(out).password == "***":
                return out
        except ValueError:
            continue
    return "<redacted URL>"  # never print what might be a password


def _portable_url(url: str, cwd: Path | None) -> str:
    if has_password(url):
        return _redact(url)
    m = _SQLITE.match(url)
    if m is not None:
        db = sqlite_file(url)
        if db is None or not db.startswith("/"):
            return url
        return m.group("scheme") + portable_path(db, placeholder=STORE, cwd=cwd) + m.group("rest")
    if url.lower().startswith("file:"):
        path = unquote(urlsplit(url).path)
        # MLflow also takes a plain folder for a file store; a file: URI would need an absolute path.
        return portable_path(path, placeholder=STORE, cwd=cwd) if path.startswith("/") else url
    return url


def _tracking_arg(m: re.Match[str]) -> str:
    if not has_password(m.group("url")):
        return m.group(0)
    # Double quotes: the shell expands the variable (single quotes, as shlex wrote them, would not).
    return f'{m.group("key")}"{TRACKING_URI_REF}"'


def portable_text(text: str, *, cwd: Path | None = None) -> str:
    """``text`` (a command line, a note, a logged value) with every secret and absolute path rewritten.

    Args:
        text: any text.
        cwd: see :func:`portable_path`; None (the default) gives a result that does not depend on
            where it is computed.

    Returns:
        The text with the tracking URIs that carry a password replaced by ``"$MLFLOW_TRACKING_URI"``,
        other passwords by ``***``, sqlite/file store paths and other absolute paths made portable.
    """
    text = _TRACKING_ARG.sub(_tracking_arg, text)

    def one(m: re.Match[str]) -> str:
        if m.group("url") is not None:
            return _portable_url(m.group("url"), cwd)
        return portable_path(m.group("path"), cwd=cwd)

    return _TOKEN.sub(one, text)


def portable_tracking_uri(uri: str, *, from_env: bool = False, cwd: Path | None = None) -> str:
    """How a report names its tracking store.

    Args:
        uri: the tracking URI the report was read from.
        from_env: the URI came from ``MLFLOW_TRACKING_URI`` (not from the command line): the report
            names the variable, which is what the reader sets too.
        cwd: a sqlite file or store folder under it is named relative to it.

    Returns:
        ``$MLFLOW_TRACKING_URI`` when the URI came from the environment or carries a password
        (printing it redacted would still show user and host of a credentialed store), else the URI
        with its path made portable (``sqlite:///mlflow.db``, ``sqlite:///<store>/mlflow.db``).
    """
    if from_env or has_password(uri):
        return TRACKING_URI_REF
    if "://" not in uri:  # a bare path: a sqlite file or a file-store folder
        return portable_path(uri, placeholder=STORE, cwd=cwd)
    return _portable_url(uri, cwd)


def portable_doc(obj: Any, *, cwd: Path | None = None) -> Any:
    """A copy of a JSON-like document with :func:`portable_text` applied to every string (keys too)."""
    if isinstance(obj, str):
        return portable_text(obj, cwd=cwd)
    if isinstance(obj, dict):
        return {portable_doc(k, cwd=cwd): portable_doc(v, cwd=cwd) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [portable_doc(v, cwd=cwd) for v in obj]
    return obj


__all__ = [
    "CACHE",
    "LOCAL",
    "MIRROR",
    "STORE",
    "TRACKING_URI_ENV",
    "TRACKING_URI_REF",
    "has_password",
    "portable_doc",
    "portable_path",
    "portable_text",
    "portable_tracking_uri",
    "sqlite_file",
]
