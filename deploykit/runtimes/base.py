"""The :class:`Runtime` contract every artifact format implements, and what callers may rely on.

Callers (the server, ``deploykit export``/``validate``) use only the members declared here: no
runtime is probed for optional attributes. A new runtime subclasses :class:`Runtime`, implements the
abstract members, overrides :attr:`Runtime.advisory_shapes` / :attr:`Runtime.signature_defs` when its
format has them, adds itself to :data:`deploykit.runtimes.RUNTIMES` and to the contract suite
(``tests/runtimes/test_contract.py``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from deploykit.errors import UsageError
from deploykit.tensors import Signature, Tensors

#: The signature a request that names none gets (TF Serving's ``kDefaultServingSignatureDefKey``).
DEFAULT_SIGNATURE = "serving_default"


class Runtime(ABC):
    """A loaded model artifact: named numpy tensors in, named numpy tensors out.

    Construction loads the artifact (there is no half-loaded state); the constructor takes
    ``(path, signature=None, **options)``, where ``signature`` names the tensors of formats that
    carry no names (TorchScript, ``.pt2``: the one recorded in the export manifest).
    :meth:`predict` is synchronous and may be called from several threads at once; :meth:`close`
    releases framework resources and is called once, when no :meth:`predict` runs any more.
    """

    #: True when the artifact's declared shapes are advisory: TF Serving feeds TF1 graphs without a
    #: shape check (a rank-1 ``x`` where ``[-1, 1]`` is declared computes), so the server checks
    #: only names and dtypes for them.
    advisory_shapes: bool = False

    #: Signature name -> serialized ``tensorflow.SignatureDef`` exactly as the artifact declares
    #: it (SavedModels), passed through to model metadata. Empty when the format has none: the
    #: server then generates SignatureDefs from :attr:`signatures`.
    signature_defs: Mapping[str, bytes] = MappingProxyType({})

    @property
    @abstractmethod
    def signatures(self) -> Mapping[str, Signature]:
        """Every signature a request can run, by name; single-signature formats have only
        :data:`DEFAULT_SIGNATURE`."""

    @abstractmethod
    def predict(self, inputs: Tensors, signature_name: str | None = None) -> Tensors:
        """Run signature ``signature_name`` (None: :data:`DEFAULT_SIGNATURE`) on ``inputs``, which
        hold every input of that signature by name; returns every output by name.

        Errors the caller can act on are :class:`deploykit.errors.DeployKitError` subclasses
        (e.g. :class:`~deploykit.errors.InvalidInput` for shapes the model cannot take)."""

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """What serves, for logs and reports: JSON-able, at least ``engine`` (e.g. ``"onnxruntime"``)
        and ``version`` (the engine's version); runtimes add what tells two set-ups apart
        (``providers``, session options, ...)."""

    @abstractmethod
    def close(self) -> None:
        """Release the framework's resources (sessions, modules)."""

    @property
    def signature(self) -> Signature:
        """The default signature (:data:`DEFAULT_SIGNATURE`)."""
        return self.signature_named(None)

    def signature_named(self, name: str | None) -> Signature:
        """Signature ``name`` (None: the default); :class:`UsageError` naming the known ones otherwise."""
        resolved = name or DEFAULT_SIGNATURE
        try:
            return self.signatures[resolved]
        except KeyError:
            raise UsageError(
                f"{type(self).__name__} has no signature {resolved!r}; it has: {', '.join(sorted(self.signatures))}"
            ) from None


def engine_label(description: Mapping[str, Any]) -> str:
    """One short line for tables and manifests: the engine, and its execution providers if any
    (``onnxruntime CPU``, ``onnxruntime CUDA+CPU``, ``torch.export``)."""
    providers = description.get("providers") or []
    short = "+".join(str(p).removesuffix("ExecutionProvider") for p in providers)
    return f"{description['engine']} {short}" if short else str(description["engine"])
