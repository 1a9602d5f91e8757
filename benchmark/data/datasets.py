"""Registry of the datasets reprorec knows: where each file comes from and how it is checked.

Every dataset lists its **resources** (files) with the official URL(s), the pinned sha256 that a
download must have, and the relative path + sha256 of the copy in the offline mirror (layout of
``../shared/datasets``; see each folder's PROVENANCE.md). A dataset has one or more **variants**: the
upstream one (the official archive) and, where the mirror holds a differently formatted copy, a
mirror one. Variants can differ in ids, timestamps or row content, so their fingerprints differ;
``load_dataset`` records which one was loaded.

Which check applies to a resource (``Resource.check``):

* ``archive sha256``: the downloaded archive/file is hashed before use (pin from a published
  checksum list, cited next to it);
* ``member sha256``: no trustworthy archive checksum is published, so the extracted member is hashed
  after extraction and before use (pin from a byte-identical copy, see PROVENANCE.md);
* ``mirror sha256``: the mirror copy is hashed (cached by path, size and mtime).

No hash here is invented: each comes from a cited checksum list or a PROVENANCE.md table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from benchmark.errors import UnknownNameError

# Published files of the Dacrema et al. evaluation repository, which vendors the original authors' repos.
_DACREMA = "https://github.com/MaurizioFD/RecSys2019_DeepLearning_Evaluation/raw/f5618c6/"
_GROUPLENS = "https://files.grouplens.org/datasets/movielens/"
# GroupLens archive checksums: tensorflow/datasets @ 1c076ac3c19c8ea83e1d1a75e0623c9a699e0d7c,
# tensorflow_datasets/url_checksums/movielens.txt (url, size, sha256).
_TFDS = "tensorflow/datasets@1c076ac tensorflow_datasets/url_checksums/movielens.txt"

_HARPER_KONSTAN = """@article{harper2015movielens,
  author = {Harper, F. Maxwell and Konstan, Joseph A.},
  title = {The MovieLens Datasets: History and Context},
  journal = {ACM Transactions on Interactive Intelligent Systems},
  volume = {5}, number = {4}, pages = {19:1--19:19}, year = {2015},
  doi = {10.1145/2827872}
}"""
_GROUPLENS_LICENSE = (
    "GroupLens MovieLens terms (README in the archive): research use only; acknowledge and cite "
    "Harper & Konstan 2015; no endorsement; no redistribution without permission; no commercial use."
)


@dataclass(frozen=True)
class Resource:
    """One file of a dataset.

    Attributes:
        urls: official download URLs, tried in order (empty: the file is only in the mirror).
        sha256: pinned sha256 of the downloaded file (the archive when ``member`` is set), or None.
        member: path of the file inside the archive, or None for a plain file.
        member_sha256: pinned sha256 of the extracted member, or None.
        mirror: path relative to the mirror root, or None.
        mirror_sha256: pinned sha256 of the mirror copy (required when ``mirror`` is set).
        size: expected download size in bytes, when published.
        checksum_source: where the pinned hashes come from.
    """

    urls: tuple[str, ...] = ()
    sha256: str | None = None
    member: str | None = None
    member_sha256: str | None = None
    mirror: str | None = None
    mirror_sha256: str | None = None
    size: int | None = None
    checksum_source: str = ""

    def __post_init__(self) -> None:
        if self.urls and self.sha256 is None and self.member_sha256 is None:
            raise ValueError(f"resource {self.urls[0]} has a URL but no pinned sha256")
        if self.mirror is not None and self.mirror_sha256 is None:
            raise ValueError(f"mirror file {self.mirror} has no pinned sha256")

    @property
    def check(self) -> str:
        """Which check a download gets: ``archive sha256``, ``member sha256`` or ``mirror only``."""
        if not self.urls:
            return "mirror only"
        checks = []
        if self.sha256 is not None:
            checks.append("archive sha256" if self.member else "file sha256")
        if self.member_sha256 is not None:
            checks.append("member sha256")
        return " + ".join(checks)

    @property
    def filename(self) -> str:
        """Base name of the file this resource resolves to."""
        if self.member:
            return self.member.rsplit("/", 1)[-1]
        if self.urls:
            return self.urls[0].rsplit("/", 1)[-1]
        assert self.mirror is not None
        return self.mirror.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class Variant:
    """One way to read a dataset's interactions: resources + parser.

    Attributes:
        name: variant name recorded in ``LoadedDataset.source`` (e.g. ``grouplens``).
        resources: keys of the resources to parse (several are concatenated).
        parser: parser name in :mod:`benchmark.data.parsers`.
        parser_options: keyword options of the parser.
        notes: how this variant relates to the others.
    """

    name: str
    resources: tuple[str, ...]
    parser: str
    parser_options: Mapping[str, Any] = field(default_factory=dict)
    notes: str = ""


@dataclass(frozen=True)
class DatasetInfo:
    """Everything known about a dataset before reading it.

    Attributes:
        name: registry name (``ml-100k``).
        title: human-readable title.
        homepage: where the data is described.
        citation: BibTeX or text to cite.
        license: the upstream license / terms of use.
        resources: resource key -> :class:`Resource` (interactions, side files, published splits).
        variants: ways to read the interactions; by default the first one available locally (mirror or
            cache) is used, else the first that can be downloaded.
        preprocessing: default preprocessing (keyword arguments of ``PreprocessConfig``) following
            what the published tables did where PROVENANCE.md says so.
        notes: caveats (fake rows, re-indexing, duplicates, ...).
    """

    name: str
    title: str
    homepage: str
    citation: str
    license: str
    resources: Mapping[str, Resource]
    variants: tuple[Variant, ...]
    preprocessing: Mapping[str, Any] = field(default_factory=dict)
    notes: str = ""

    @property
    def parser(self) -> str:
        """Parser of the primary (first) variant."""
        return self.variants[0].parser if self.variants else ""

    @property
    def parser_options(self) -> Mapping[str, Any]:
        """Parser options of the primary (first) variant."""
        return self.variants[0].parser_options if self.variants else {}

    def resource(self, key: str) -> Resource:
        """Return the resource ``key`` or raise :class:`UnknownNameError`."""
        try:
            return self.resources[key]
        except KeyError:
            raise UnknownNameError(f"resource of {self.name}", key, list(self.resources)) from None

    def variant(self, name: str) -> Variant:
        """Return the variant ``name`` or raise :class:`UnknownNameError`."""
        for v in self.variants:
            if v.name == name:
                return v
        raise UnknownNameError(f"variant of {self.name}", name, [v.name for v in self.variants])


def _dacrema(path: str, sha: str, mirror: str) -> Resource:
    """A byte-identical copy of a file in the Dacrema repo: one sha256 for download and mirror."""
    return Resource(
        urls=(_DACREMA + path,),
        sha256=sha,
        mirror=mirror,
        mirror_sha256=sha,
        checksum_source=f"{mirror.split('/')[0]}/PROVENANCE.md (byte-identical copy of {path})",
    )


def _mirror_only(path: str, sha: str) -> Resource:
    return Resource(mirror=path, mirror_sha256=sha, checksum_source=f"{path.split('/')[0]}/PROVENANCE.md")


_USER_ITEM_RATING_TS = {"names": ["user", "item", "rating", "timestamp"]}

_DATASETS: list[DatasetInfo] = [
    DatasetInfo(
        name="ml-100k",
        title="MovieLens 100K",
        homepage="https://grouplens.org/datasets/movielens/100k/",
        citation=_HARPER_KONSTAN,
        license=_GROUPLENS_LICENSE,
        resources={
            "ratings": Resource(
                urls=(_GROUPLENS + "ml-100k.zip",),
                sha256="50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229",
                size=4924029,
                member="ml-100k/u.data",
                mirror="movielens-100k/u.data",
                mirror_sha256="06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490",
                checksum_source=f"archive: {_TFDS}; mirror: movielens-100k/PROVENANCE.md",
            ),
            "mcrec_train": _dacrema(
                "Conferences/KDD/MCRec_github/data/ml-100k.train.rating",
                "d043d9fedf7efecb41fdfa98e4c96c5134a26d247a70ba5d4cf3f32a61c5957b",
                "movielens-100k/MCRec_KDD2018/ml-100k.train.rating",
            ),
            "mcrec_test": _dacrema(
                "Conferences/KDD/MCRec_github/data/ml-100k.test.rating",
                "f5c8e8216402dc6e277fc15853b90ef9e4b8f922c77d20bac7e1ae80b5c55ae5",
                "movielens-100k/MCRec_KDD2018/ml-100k.test.rating",
            ),
        },
        variants=(
            Variant(
                "grouplens",
                ("ratings",),
                "delimited",
                {"sep": "\t", **_USER_ITEM_RATING_TS},
                notes=(
                    "u.data, from the official zip or the mirror. The mirror copy has the same 100,000 rows "
                    "in the same order as an independent copy of GroupLens u.data (RecBole), so both are "
                    "expected to give the same fingerprint (not checkable offline)."
                ),
            ),
        ),
    ),
    DatasetInfo(
        name="ml-1m",
        title="MovieLens 1M",
        homepage="https://grouplens.org/datasets/movielens/1m/",
        citation=_HARPER_KONSTAN,
        license=_GROUPLENS_LICENSE,
        resources={
            "ratings": Resource(
                urls=(_GROUPLENS + "ml-1m.zip",),
                sha256="a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20",
                size=5917549,
                member="ml-1m/ratings.dat",
                checksum_source=f"archive: {_TFDS}",
            ),
            "ratings_notimestamp": _mirror_only(
                "movielens-1m/ratings_notimestamp.tsv.gz",
                "01b3093311b78f59182acd189eeb52302b57f84db83e387bcecec5563c93c82d",
            ),
            "item_map": _mirror_only(
                "movielens-1m/derived/ml1m_r_item_to_movieid.tsv",
                "b67b5280117035a553f42213aa68a68bcbe941dab9fe6ad743512eeaabd5f426",
            ),
            "neumf_item_map": _mirror_only(
                "movielens-1m/derived/neumf_item_to_r_item.tsv",
                "45af09e1da8edd2d536614e81f93f156a10640c2142d468168d5fe820b63fe48",
            ),
            "neumf_train_reconstructed": _mirror_only(
                "movielens-1m/NeuMF_WWW2017/ml-1m.train.rating.reconstructed.gz",
                "9e587f55c76298af4267f20acb79fd46f997314ab68574a18df318f3cd128a73",
            ),
            "neumf_test": _dacrema(
                "Conferences/WWW/NeuMF_github/Data/ml-1m.test.rating",
                "231ae11eb060b643a8c58c063cd17ffc743b54f569afb073d1abb6cf126b88b5",
                "movielens-1m/NeuMF_WWW2017/ml-1m.test.rating",
            ),
            "neumf_negatives": _dacrema(
                "Conferences/WWW/NeuMF_github/Data/ml-1m.test.negative",
                "127853228a76b7d21c0481e8ef8d00dd009cd5c88670dbdd9e9debfdb9f93de4",
                "movielens-1m/NeuMF_WWW2017/ml-1m.test.negative",
            ),
            "spectralcf_train": _dacrema(
                "Conferences/RecSys/SpectralCF_github/data/ml-1m/train_users.dat",
                "ee6cf59160f3cde155416941ac42890f79accd9cf7f1ac5496ee194db49687bb",
                "movielens-1m/SpectralCF_RecSys2018/train_users.dat",
            ),
            "spectralcf_test": _dacrema(
                "Conferences/RecSys/SpectralCF_github/data/ml-1m/test_users.dat",
                "b114c7c87a94462399b02e4f59f05e91b690a9091adea83dd8efcfd3e03b67ee",
                "movielens-1m/SpectralCF_RecSys2018/test_users.dat",
            ),
        },
        variants=(
            Variant(
                "rda-notimestamp",
                ("ratings_notimestamp",),
                "delimited",
                {"sep": "\t", "names": ["user", "item", "rating"]},
                notes=(
                    "Mirror only: all 1,000,209 ratings from an R package (ratings.rda), NO timestamps, "
                    "items re-indexed 1..3706 by rank of MovieID (map: resource item_map). Same users, "
                    "ratings and counts as GroupLens, different item ids: fingerprint differs from the "
                    "grouplens variant. Published splits of the mirror (NeuMF, SpectralCF) use other ids."
                ),
            ),
            Variant(
                "grouplens",
                ("ratings",),
                "delimited",
                {"sep": "::", **_USER_ITEM_RATING_TS},
                notes="ratings.dat `UserID::MovieID::Rating::Timestamp` from the official ml-1m.zip.",
            ),
        ),
        notes="The mirror variant has no timestamps: temporal splits need the grouplens variant.",
    ),
    DatasetInfo(
        name="ml-20m",
        title="MovieLens 20M",
        homepage="https://grouplens.org/datasets/movielens/20m/",
        citation=_HARPER_KONSTAN,
        license=_GROUPLENS_LICENSE,
        resources={
            "ratings": Resource(
                urls=(_GROUPLENS + "ml-20m.zip",),
                sha256="96f243c338a8665f6bcc89c53edf6ee39162a846940de6b7c8c48aeada765ff3",
                size=198702078,
                member="ml-20m/ratings.csv",
                checksum_source=f"archive: {_TFDS}",
            ),
        },
        variants=(
            Variant(
                "grouplens",
                ("ratings",),
                "delimited",
                {
                    "sep": ",",
                    "header": True,
                    "columns": {
                        "userId": "user",
                        "movieId": "item",
                        "rating": "rating",
                        "timestamp": "timestamp",
                    },
                },
            ),
        ),
        notes="Not staged in the mirror: download only (about 190 MiB).",
    ),
    DatasetInfo(
        name="ml-latest-small",
        title="MovieLens latest small (2018-09-26)",
        homepage="https://grouplens.org/datasets/movielens/latest/",
        citation=_HARPER_KONSTAN,
        license=(
            "GroupLens ml-latest-small terms (README.txt): research use; redistribution only under the "
            "same license; no endorsement; cite Harper & Konstan 2015; no commercial use without permission."
        ),
        resources={
            "ratings": Resource(
                urls=(_GROUPLENS + "ml-latest-small.zip",),
                sha256="696d65a3dfceac7c45750ad32df2c259311949efec81f0f144fdfb91ebc9e436",
                size=978202,
                member="ml-latest-small/ratings.csv",
                mirror="movielens-latest-small/ratings.csv",
                mirror_sha256="6d258d2a03ffd179ade1a5ce725b21cf7a35538f65de1940a311f1dc43ee468e",
                checksum_source=f"archive: {_TFDS}; mirror: movielens-latest-small/PROVENANCE.md",
            ),
        },
        variants=(
            Variant(
                "grouplens",
                ("ratings",),
                "delimited",
                {
                    "sep": ",",
                    "header": True,
                    "columns": {
                        "userId": "user",
                        "movieId": "item",
                        "rating": "rating",
                        "timestamp": "timestamp",
                    },
                    # The mirror copy has one fake last row appended (PROVENANCE.md); drop it by
                    # content, so the mirror and the official file give the same data.
                    "drop_rows": [{"user": 999, "item": 999999, "rating": 5.0, "timestamp": 1493846415}],
                },
            ),
        ),
        notes=(
            "The mirror's ratings.csv has ONE FAKE LAST ROW `999,999999,5.0,1493846415` appended by the "
            "repository it was copied from; it is dropped by content (user 999 / movie 999999 do not "
            "exist). Genuine data: 100,836 ratings, 610 users, 9,724 movies."
        ),
    ),
    DatasetInfo(
        name="citeulike-a",
        title="CiteULike-a (Wang & Blei, KDD 2011)",
        homepage="https://github.com/eelxpeng/CollaborativeVAE",
        citation="""@inproceedings{wang2011ctr,
  author = {Wang, Chong and Blei, David M.},
  title = {Collaborative Topic Modeling for Recommending Scientific Articles},
  booktitle = {KDD}, pages = {448--456}, year = {2011}, doi = {10.1145/2020408.2020480}
}""",
        license="No data license stated by the authors; research use only; cite Wang & Blei 2011.",
        resources={
            "users": _dacrema(
                "Conferences/KDD/CollaborativeVAE_github/data/citeulike-a/users.dat",
                "a8059144c3b2b4dbc83a50b190c14261a6f491761e83fac5967ff8d1fcaff1b6",
                "citeulike-a/users.dat",
            ),
            **{
                f"cvae_{part}_{p}": _dacrema(
                    f"Conferences/KDD/CollaborativeVAE_github/data/citeulike-a/cf-{part}-{p}-users.dat",
                    sha,
                    f"citeulike-a/CVAE_KDD2017/cf-{part}-{p}-users.dat",
                )
                for part, p, sha in (
                    ("train", 1, "660ef4404b3d2ea75c1888fdad32b0c2037a8bc815312537f211c4a44ef3c5df"),
                    ("test", 1, "1809da1a5a136b377eaad0b6b76b6a04ec09c8b59e74c98bfbe9b892f011505c"),
                    ("train", 10, "d743cc216f1383e40767b5979ceae736009bf30835d49334ecfbdd692622c28f"),
                    ("test", 10, "204a51f7496fb1234e2b7acbc52084043fe1f784e070e16d254945abd2482d39"),
                )
            },
            "cmn_npz": _dacrema(
                "Conferences/SIGIR/CMN_github/data/citeulike-a.npz",
                "f0a97219a00e9c57d7b0c58c0e345d24200f059b4490fa307a885bf53afb2eeb",
                "citeulike-a/CMN_SIGIR2018/citeulike-a.npz",
            ),
        },
        variants=(
            Variant(
                "ctr",
                ("users",),
                "user_lists",
                {"layout": "count"},
                notes="users.dat: line u (0-based user id) = `n item item ...`, items 0-based.",
            ),
        ),
        notes="Implicit (no ratings, no timestamps). Item texts (mult_nor.mat) are not available.",
    ),
    DatasetInfo(
        name="citeulike-t",
        title="CiteULike-t (Wang, Wang & Yeung, KDD 2015)",
        homepage="https://github.com/eelxpeng/CollaborativeVAE",
        citation="""@inproceedings{wang2015cdl,
  author = {Wang, Hao and Wang, Naiyan and Yeung, Dit-Yan},
  title = {Collaborative Deep Learning for Recommender Systems},
  booktitle = {KDD}, pages = {1235--1244}, year = {2015}, doi = {10.1145/2783258.2783273}
}""",
        license="No data license stated by the authors; research use only; cite Wang, Wang & Yeung 2015.",
        resources={
            f"cvae_{part}_{p}": _dacrema(
                f"Conferences/KDD/CollaborativeVAE_github/data/citeulike-t/cf-{part}-{p}-users.dat",
                sha,
                f"citeulike-t/CVAE_KDD2017/cf-{part}-{p}-users.dat",
            )
            for part, p, sha in (
                ("train", 1, "e57e506f2e022a6c1605b4f50152e51c4b714210bd8c7b162ceadae6c38dc2ec"),
                ("test", 1, "dca8695f1aa9b397e8b14e3f51124658c90ec6867767cc355786ef7890446154"),
                ("train", 10, "5c459068b822f9889909e784592d2f3d1a387c7cac1a8dd919afc526c32dfdc7"),
                ("test", 10, "bbe490d0ef560c59e74416160c053c4ce90788d1b6e76f650a78131a2c7f9249"),
            )
        },
        variants=(
            Variant(
                "cvae-union",
                ("cvae_train_1", "cvae_test_1"),
                "user_lists",
                {"layout": "count"},
                notes=(
                    "No users.dat is published: the data is the union of the disjoint CVAE P=1 train "
                    "and test files."
                ),
            ),
        ),
        notes="Implicit. Item ids run to 25,974 but only 25,584 items occur; ids are those that occur.",
    ),
    DatasetInfo(
        name="lastfm-hetrec2011",
        title="Last.fm HetRec 2011 (hetrec2011-lastfm-2k), MCRec re-indexed copy",
        homepage="https://grouplens.org/datasets/hetrec-2011/",
        citation="""@inproceedings{cantador2011hetrec,
  author = {Cantador, Iv\\'an and Brusilovsky, Peter and Kuflik, Tsvi},
  title = {2nd Workshop on Information Heterogeneity and Fusion in Recommender Systems (HetRec 2011)},
  booktitle = {RecSys}, year = {2011}
}""",
        license="HetRec 2011 / Last.fm: non-commercial research use; cite Cantador et al. 2011; "
        "respect Last.fm terms of use.",
        resources={
            "user_artist": _dacrema(
                "Conferences/KDD/MCRec_github/Dataset-In-Papers_master/LastFM/user_artist.dat",
                "4303d1dccfd3b8b03c1e34f99710c4d99539c9fa9b54f654e34299efeefbff16",
                "lastfm-hetrec2011-mcrec/user_artist.dat",
            ),
        },
        variants=(
            Variant(
                "mcrec",
                ("user_artist",),
                "delimited",
                {"sep": "\t", "names": ["user", "item", "rating"]},
                notes="MCRec's re-numbered user_artists.dat; the 'rating' is the listen count (1..352,698).",
            ),
        ),
        notes=(
            "Ids are MCRec's 1-based re-numbering, not the HetRec ids (so it is not interchangeable with "
            "the GroupLens hetrec2011-lastfm-2k.zip, for which no published checksum was found)."
        ),
    ),
    DatasetInfo(
        name="filmtrust",
        title="FilmTrust (Guo, Zhang & Yorke-Smith, IJCAI 2013)",
        homepage="https://guoguibing.github.io/librec/datasets.html",
        citation="""@inproceedings{guo2013filmtrust,
  author = {Guo, Guibing and Zhang, Jie and Yorke-Smith, Neil},
  title = {A Novel Bayesian Similarity Measure for Recommender Systems},
  booktitle = {IJCAI}, pages = {2619--2625}, year = {2013}
}""",
        license="No explicit license; distributed by the LibRec project for research; cite Guo et al. 2013.",
        resources={
            "ratings": _dacrema(
                "Conferences/IJCAI/NeuRec_github/data/ratings_filmtrust.dat",
                "241167424e24d588e8871d68641e94ead98d5b3a4f0db01ef3181a74ad35e7a1",
                "filmtrust/ratings_filmtrust.dat",
            ),
        },
        variants=(
            Variant("neurec", ("ratings",), "delimited", {"sep": " ", "names": ["user", "item", "rating"]}),
        ),
        # Dacrema's FilmTrust reader drops duplicate pairs (3 pairs of user 308) before splitting.
        preprocessing={"duplicates": "first"},
        notes="35,497 rows, 35,494 distinct pairs: 3 duplicate pairs (user 308); the first is kept.",
    ),
    DatasetInfo(
        name="amazon-digital-music",
        title="Amazon Digital Music, pruned copy of the DMF code (IJCAI 2017)",
        homepage="https://jmcauley.ucsd.edu/data/amazon/",
        citation="""@inproceedings{mcauley2015image,
  author = {McAuley, Julian and Targett, Christopher and Shi, Qinfeng and van den Hengel, Anton},
  title = {Image-Based Recommendations on Styles and Substitutes},
  booktitle = {SIGIR}, pages = {43--52}, year = {2015}
}""",
        license="Derived from the McAuley Amazon review data: research use; cite McAuley et al.",
        resources={
            "ratings": _dacrema(
                "Conferences/IJCAI/DMF_original/data_www/Amazon_ratings_Digital_Music_pruned.txt",
                "db0a9f971d8106f179e57ad0087e6a524be38cc1bceed01ce31f9ca452ef6c8e",
                "amazon-digital-music-dmf/Amazon_ratings_Digital_Music_pruned.txt",
            ),
        },
        variants=(Variant("dmf", ("ratings",), "delimited", {"sep": " ", **_USER_ITEM_RATING_TS}),),
        notes="DMF's pruned copy (users with >= 20 ratings), 0-based ids, unix timestamps.",
    ),
    DatasetInfo(
        name="yelp",
        title="Yelp subset shipped with MCRec (KDD 2018)",
        homepage="https://github.com/librahu/MCRec",
        citation="""@inproceedings{hu2018mcrec,
  author = {Hu, Binbin and Shi, Chuan and Zhao, Wayne Xin and Yu, Philip S.},
  title = {Leveraging Meta-path based Context for Top-N Recommendation with a Neural Co-Attention Model},
  booktitle = {KDD}, pages = {1531--1540}, year = {2018}
}""",
        license="Yelp Dataset Challenge terms: academic, non-commercial, NO redistribution.",
        resources={
            "user_business": _mirror_only(
                "yelp-mcrec/user_business.dat",
                "d57853e95c3f49f0060f31ee9365ab3fffe1010999c76863c3cd9628b91e994d",
            ),
        },
        variants=(
            Variant(
                "mcrec", ("user_business",), "delimited", {"sep": "\t", "names": ["user", "item", "rating"]}
            ),
        ),
        notes="Mirror only (Yelp terms forbid redistribution, so no download URL is registered).",
    ),
    DatasetInfo(
        name="file",
        title="A user's own interaction file (CSV/TSV/parquet, gzip allowed)",
        homepage="",
        citation="",
        license="As the file's owner states.",
        resources={},
        variants=(),
        notes=(
            "options: path, format (csv|tsv|parquet; default from the suffix), sep, header (bool), "
            "columns (mapping file column -> user/item/rating/timestamp, or a list of names when there "
            "is no header)."
        ),
    ),
    DatasetInfo(
        name="synthetic",
        title="Synthetic power-law interactions",
        homepage="",
        citation="",
        license="Generated; no restrictions.",
        resources={},
        variants=(),
        notes="options: n_users, n_items, n_interactions, seed, exponent (see benchmark.data.synthetic).",
    ),
]

DATASETS: dict[str, DatasetInfo] = {d.name: d for d in _DATASETS}


def get_dataset_info(name: str) -> DatasetInfo:
    """Return the registered :class:`DatasetInfo` of ``name``.

    Raises:
        UnknownNameError: ``name`` is not registered (the message lists the known names).
    """
    try:
        return DATASETS[name]
    except KeyError:
        raise UnknownNameError("dataset", name, list(DATASETS)) from None
