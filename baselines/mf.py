"""Matrix factorisation for implicit feedback through the ``implicit`` library: iALS and BPR.

Both models are trained one epoch at a time so that the tuner can early-stop them
(:class:`benchmark.models.IterativeRecommender`); the numerical work is entirely ``implicit``'s
(``implicit.cpu.als.AlternatingLeastSquares`` and ``implicit.cpu.bpr.BayesianPersonalizedRanking``,
the CPU classes, named explicitly so that results never depend on whether CUDA is present).
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares
from implicit.cpu.bpr import BayesianPersonalizedRanking
from implicit.utils import check_random_state
from threadpoolctl import threadpool_limits

from benchmark.data.interactions import InteractionMatrix
from benchmark.errors import ConfigError
from benchmark.models import IterativeRecommender, ModelTags, Param

CONFIDENCE_SCALINGS = ("linear", "log")


def confidence_matrix(x: sp.csr_matrix, scaling: str, alpha: float, epsilon: float = 1.0) -> sp.csr_matrix:
    """Hu, Koren & Volinsky's confidence ``C`` of the observed entries of ``x`` (float32 CSR).

    ``linear``: ``C = 1 + alpha * x``; ``log``: ``C = 1 + alpha * log(1 + x / epsilon)``, both on
    the stored entries only (unobserved entries keep confidence 1, preference 0). ``implicit``
    takes the stored values as the confidence ``c_ui`` itself, which is why the ``1 +`` is here.
    """
    if scaling not in CONFIDENCE_SCALINGS:
        raise ConfigError(f"confidence scaling {scaling!r} is not one of {list(CONFIDENCE_SCALINGS)}")
    c = sp.csr_matrix(x, dtype=np.float32, copy=True)
    if scaling == "linear":
        c.data = (1.0 + alpha * c.data).astype(np.float32)
    else:
        c.data = (1.0 + alpha * np.log1p(c.data / epsilon)).astype(np.float32)
    return c


def _generator(seed: int) -> np.random.Generator:
    # implicit passes a Generator through unchanged, so one stream spans all per-epoch fit calls.
    return np.random.default_rng(int(seed))


class IALS(IterativeRecommender):
    """Implicit-feedback alternating least squares (iALS), trained by ``implicit``.

    Hu, Koren & Volinsky, "Collaborative Filtering for Implicit Feedback Datasets", ICDM 2008,
    with the conjugate-gradient solver of Takács, Pilászy & Tikk (RecSys 2011) when ``use_cg``. The
    observed entries get confidence ``1 + alpha * x`` (``linear``) or
    ``1 + alpha * log(1 + x / epsilon)`` (``log``; ``epsilon`` is only used then), unobserved ones
    confidence 1 and preference 0. The training data is binary, so ``log`` scaling amounts to a
    reparametrised confidence; both are kept because Dacrema et al. searched both.

    One epoch is one ALS sweep (users, then items). The first epoch initialises the factors from
    ``random_state`` as ``implicit``'s ``fit`` does; every epoch calls the solver that ``fit`` loops
    over, with the confidence matrix and its transpose computed once, so ``epochs`` epochs give
    exactly the factors of ``implicit`` run with ``iterations=epochs`` (a test compares them). ALS is
    deterministic for any ``num_threads`` (each row is solved independently). BLAS is limited to
    one thread while training, as ``implicit`` recommends.

    Users and items without training interactions get zero factors, hence zero scores.

    Args:
        factors: number of latent factors.
        regularization: L2 regularisation of the factors.
        alpha: confidence weight of observed entries.
        epsilon: scale of the ``log`` confidence.
        confidence_scaling: ``linear`` or ``log``.
        epochs: maximum number of ALS sweeps (the tuner may stop earlier).
        use_cg: conjugate-gradient solver (faster) instead of the exact Cholesky solve.
        num_threads: threads of ``implicit`` (0: all cores).
        random_state: seed of the initial factors.
    """

    tags: ClassVar[ModelTags] = ModelTags(test_params={"factors": 4, "regularization": 1.0, "epochs": 10})

    param_specs: ClassVar[dict[str, Param]] = {
        "factors": Param("int", low=1, high=10_000),
        "regularization": Param("float", low=0.0, high=1e6),
        "alpha": Param("float", low=0.0, high=1e6),
        "epsilon": Param("float", low=1e-12, high=1e6),
        "confidence_scaling": Param("str", choices=CONFIDENCE_SCALINGS),
        "epochs": Param("int", low=1, high=100_000),
        "use_cg": Param("bool"),
        "num_threads": Param("int", low=0, high=1024),
        "random_state": Param("int", low=0, high=2**63 - 1),
    }

    def __init__(
        self,
        factors: int = 64,
        regularization: float = 1e-3,
        alpha: float = 1.0,
        epsilon: float = 1.0,
        confidence_scaling: str = "linear",
        epochs: int = 50,
        use_cg: bool = True,
        num_threads: int = 0,
        random_state: int = 0,
    ) -> None:
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.epsilon = epsilon
        self.confidence_scaling = confidence_scaling
        self.epochs = epochs
        self.use_cg = use_cg
        self.num_threads = num_threads
        self.random_state = random_state

    def _init_fit(self, train: InteractionMatrix) -> None:
        self.n_items_ = train.n_items
        self.empty_users_ = train.user_counts() == 0
        self.empty_items_ = train.item_counts() == 0
        self.confidence_ = confidence_matrix(
            train.matrix, self.confidence_scaling, float(self.alpha), float(self.epsilon)
        )
        self._confidence_t: sp.csr_matrix | None = None
        with threadpool_limits(1, "blas"):
            self.implicit_model_ = AlternatingLeastSquares(
                factors=int(self.factors),
                regularization=float(self.regularization),
                alpha=1.0,  # the confidence is already in the matrix
                dtype=np.float32,
                use_cg=bool(self.use_cg),
                iterations=1,
                num_threads=int(self.num_threads),
                random_state=_generator(self.random_state),
            )

    def _fit_epoch(self, epoch: int) -> None:
        model = self.implicit_model_
        with threadpool_limits(1, "blas"):
            c = self.confidence_
            if model.user_factors is None:
                # What implicit's fit does before its loop (0.7: factors drawn from random_state,
                # users first, uniform * 0.01), so that the epochs below give its factors exactly;
                # its fit would also transpose C, a copy of the whole matrix this loop does once.
                rng = check_random_state(model.random_state)
                model.user_factors = rng.random((c.shape[0], model.factors), dtype=model.dtype) * 0.01
                model.item_factors = rng.random((c.shape[1], model.factors), dtype=model.dtype) * 0.01
            if self._confidence_t is None:
                self._confidence_t = c.T.tocsr()
            # The body of implicit's ALS fit loop, without re-deriving C and C^T every epoch.
            reg, threads = float(self.regularization), model.num_threads
            model.solver(c, model.user_factors, model.item_factors, reg, num_threads=threads)
            model.solver(self._confidence_t, model.item_factors, model.user_factors, reg, num_threads=threads)
            model._YtY = model._XtX = model._user_norms = model._item_norms = None
        _zero_empty(model, self.empty_users_, self.empty_items_)

    def _end_fit(self) -> None:
        self._confidence_t = None  # only needed while training

    @property
    def user_factors_(self) -> np.ndarray:
        return self.implicit_model_.user_factors

    @property
    def item_factors_(self) -> np.ndarray:
        return self.implicit_model_.item_factors

    def get_state(self) -> Any:
        return copy.deepcopy((self.implicit_model_.user_factors, self.implicit_model_.item_factors))

    def set_state(self, state: Any) -> None:
        user, item = copy.deepcopy(state)
        self.implicit_model_.user_factors, self.implicit_model_.item_factors = user, item

    def score(self, users: np.ndarray) -> np.ndarray:
        self._check_fitted("implicit_model_")
        return _dot_scores(self.implicit_model_, users)


class BPR(IterativeRecommender):
    """Bayesian Personalized Ranking matrix factorisation, trained by ``implicit``.

    Rendle, Freudenthaler, Gantner & Schmidt-Thieme, "BPR: Bayesian Personalized Ranking from
    Implicit Feedback", UAI 2009. ``implicit`` learns ``factors`` latent factors plus an item bias
    by SGD on sampled (user, positive, negative) triples; one epoch is one ``fit`` call with
    ``iterations=1`` (``implicit`` keeps the existing factors), drawing its samplers' seeds from one
    generator seeded by ``random_state``.

    Determinism: with ``num_threads=1`` (the default) the same ``random_state`` gives the same
    scores. With more threads ``implicit`` runs lock-free parallel SGD (Hogwild), whose result
    depends on thread timing: faster, but not reproducible.

    Users without training interactions have zero factors and score items by the learned item
    bias (a popularity-like fallback); items without training interactions score 0.

    Args:
        factors: number of latent factors (the item bias comes on top).
        learning_rate: SGD step size.
        regularization: L2 regularisation of the factors.
        epochs: maximum number of epochs (one epoch samples as many triples as interactions).
        verify_negative_samples: resample negatives the user has interacted with.
        num_threads: threads of ``implicit``; 1 for reproducible results, 0 for all cores.
        random_state: seed of the initial factors and of the samplers.
    """

    tags: ClassVar[ModelTags] = ModelTags(test_params={"factors": 4, "epochs": 200})

    param_specs: ClassVar[dict[str, Param]] = {
        "factors": Param("int", low=1, high=10_000),
        "learning_rate": Param("float", low=1e-12, high=10.0),
        "regularization": Param("float", low=0.0, high=1e6),
        "epochs": Param("int", low=1, high=100_000),
        "verify_negative_samples": Param("bool"),
        "num_threads": Param("int", low=0, high=1024),
        "random_state": Param("int", low=0, high=2**63 - 1),
    }

    def __init__(
        self,
        factors: int = 64,
        learning_rate: float = 1e-2,
        regularization: float = 1e-2,
        epochs: int = 100,
        verify_negative_samples: bool = True,
        num_threads: int = 1,
        random_state: int = 0,
    ) -> None:
        self.factors = factors
        self.learning_rate = learning_rate
        self.regularization = regularization
        self.epochs = epochs
        self.verify_negative_samples = verify_negative_samples
        self.num_threads = num_threads
        self.random_state = random_state

    def _init_fit(self, train: InteractionMatrix) -> None:
        self.n_items_ = train.n_items
        # implicit's Cython code takes writable buffers; InteractionMatrix arrays are read-only.
        self.train_ = train.matrix.copy()
        self.empty_users_ = train.user_counts() == 0
        self.empty_items_ = train.item_counts() == 0
        self.implicit_model_ = BayesianPersonalizedRanking(
            factors=int(self.factors),
            learning_rate=float(self.learning_rate),
            regularization=float(self.regularization),
            dtype=np.float32,
            iterations=1,
            num_threads=int(self.num_threads),
            verify_negative_samples=bool(self.verify_negative_samples),
            random_state=_generator(self.random_state),
        )

    def _fit_epoch(self, epoch: int) -> None:
        with threadpool_limits(1, "blas"):
            self.implicit_model_.fit(self.train_, show_progress=False)

    @property
    def user_factors_(self) -> np.ndarray:
        return self.implicit_model_.user_factors

    @property
    def item_factors_(self) -> np.ndarray:
        return self.implicit_model_.item_factors

    def get_state(self) -> Any:
        model = self.implicit_model_
        return copy.deepcopy((model.user_factors, model.item_factors, model.random_state))

    def set_state(self, state: Any) -> None:
        model = self.implicit_model_
        model.user_factors, model.item_factors, model.random_state = copy.deepcopy(state)

    def score(self, users: np.ndarray) -> np.ndarray:
        self._check_fitted("implicit_model_")
        scores = _dot_scores(self.implicit_model_, users)
        scores[:, self.empty_items_] = 0.0
        return scores


def _zero_empty(model: Any, empty_users: np.ndarray, empty_items: np.ndarray) -> None:
    # Rows without data are solved from b = 0 only approximately by CG; make them exactly 0.
    model.user_factors[empty_users] = 0.0
    model.item_factors[empty_items] = 0.0


def _dot_scores(model: Any, users: np.ndarray) -> np.ndarray:
    u = model.user_factors[np.asarray(users, dtype=np.int64)]
    return np.asarray(u @ model.item_factors.T, dtype=np.float32)
