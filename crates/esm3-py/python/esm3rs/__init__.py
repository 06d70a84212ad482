"""esm3rs: ESM3 and ESM C in Rust, from Python.

The names follow EvolutionaryScale's ``esm`` SDK (``ESMProtein``, ``GenerationConfig``,
``FunctionAnnotation``, track names), arrays are numpy, and every computing call releases the
GIL, so threads run models side by side::

    import esm3rs
    model = esm3rs.load("models/esm3-rs-small")
    protein = model.fold("MKTAYIAKQRQISFVKSHFSRQ")
    protein.to_pdb("fold.pdb")                 # pLDDT x 100 in the B-factor column
    emb = model.embed(["MKTAYIAKQR", "GSHMSE"])  # [Embedding(per_residue, mean), ...]

The engine is the same library the ``esm3`` binary runs: same weights, same seed, same output.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, NamedTuple, Optional, Sequence, Union

import numpy as np

from . import _native

__version__ = _native.__version__

TRACKS = ("sequence", "structure", "secondary_structure", "sasa", "function")

__all__ = [
    "ESMProtein",
    "ESMProteinTensor",
    "FunctionAnnotation",
    "GenerationConfig",
    "Embedding",
    "PseudoLikelihood",
    "Model",
    "load",
    "unconditional_plan",
    "folding_config",
    "inverse_folding_config",
    "TRACKS",
]


@dataclass(frozen=True)
class FunctionAnnotation:
    """A label (InterPro id, keyword or residue annotation) over residues ``start..=end``, 1-based."""

    label: str
    start: int
    end: int


def _float32_atoms(value, what: str) -> Optional[np.ndarray]:
    if value is None:
        return None
    array = np.ascontiguousarray(np.asarray(value, dtype=np.float32))
    if array.ndim != 3 or array.shape[1:] != (37, 3):
        raise ValueError(f"{what} has shape {array.shape}, expected (L, 37, 3) atom37 in Å")
    return array


@dataclass
class ESMProtein:
    """One protein, every track optional; ``_`` marks an unknown position in strings.

    ``coordinates`` are atom37 in Å as a float32 array ``(L, 37, 3)``, NaN for missing atoms;
    ``plddt`` is in 0..1 per residue. ``predicted_aligned_error`` (Å, ``(L, L)``) and
    ``residue_annotations`` are esm3rs additions the SDK's class does not have.
    """

    sequence: Optional[str] = None
    secondary_structure: Optional[str] = None
    sasa: Optional[list] = None
    function_annotations: Optional[list] = None
    coordinates: Optional[np.ndarray] = None
    plddt: Optional[np.ndarray] = None
    ptm: Optional[float] = None
    residue_annotations: Optional[list] = None
    predicted_aligned_error: Optional[np.ndarray] = None

    def __len__(self) -> int:
        for track in (self.sequence, self.secondary_structure, self.sasa, self.coordinates):
            if track is not None:
                return len(track)
        raise ValueError("the protein has no track to take its length from")

    # ---- files -------------------------------------------------------------------------
    @classmethod
    def from_pdb(cls, path: Union[str, os.PathLike], chain_id: Optional[str] = None) -> "ESMProtein":
        """A chain of a PDB/mmCIF file (plain or .gz); the first protein chain by default."""
        _, sequence, coordinates = _native.read_chain(os.fspath(path), chain_id)
        return cls(sequence=sequence, coordinates=coordinates)

    def to_pdb(self, path: Union[str, os.PathLike]) -> None:
        """Writes chain A, residues 1..L, pLDDT x 100 as B-factor (as ``esm3 fold`` does)."""
        if self.coordinates is None:
            raise ValueError("the protein has no coordinates to write")
        sequence = (self.sequence or "X" * len(self)).replace("_", "X")
        plddt = None if self.plddt is None else [float(v) for v in self.plddt]
        _native.write_pdb(os.fspath(path), sequence, _float32_atoms(self.coordinates, "coordinates"), plddt)

    # ---- the engine's form -------------------------------------------------------------
    def _native_fields(self) -> dict:
        def spans(annotations):
            if annotations is None:
                return None
            return [(a.label, int(a.start), int(a.end)) for a in annotations]

        return {
            "sequence": self.sequence,
            "secondary_structure": self.secondary_structure,
            "sasa": None if self.sasa is None else [None if v is None else float(v) for v in self.sasa],
            "function_annotations": spans(self.function_annotations),
            "residue_annotations": spans(self.residue_annotations),
            "coordinates": _float32_atoms(self.coordinates, "ESMProtein.coordinates"),
            "plddt": None if self.plddt is None else [float(v) for v in self.plddt],
            "ptm": None if self.ptm is None else float(self.ptm),
        }

    @classmethod
    def _from_native(cls, d: dict) -> "ESMProtein":
        def spans(v):
            return None if v is None else [FunctionAnnotation(*a) for a in v]

        return cls(
            sequence=d["sequence"],
            secondary_structure=d["secondary_structure"],
            sasa=d["sasa"],
            function_annotations=spans(d["function_annotations"]),
            coordinates=d["coordinates"],
            plddt=d["plddt"],
            ptm=d["ptm"],
            residue_annotations=spans(d["residue_annotations"]),
            predicted_aligned_error=d["predicted_aligned_error"],
        )

    # ---- the official SDK ----------------------------------------------------------------
    def to_sdk(self):
        """This protein as the ``esm`` SDK's ``ESMProtein`` (needs ``esm`` and ``torch``).

        Residue annotations join ``function_annotations`` there, as the SDK keeps them;
        the PAE has no field in the SDK and is dropped.
        """
        import torch
        from esm.sdk.api import ESMProtein as SdkProtein
        from esm.utils.types import FunctionAnnotation as SdkAnnotation

        annotations = None
        if self.function_annotations is not None or self.residue_annotations is not None:
            annotations = [
                SdkAnnotation(label=a.label, start=a.start, end=a.end)
                for a in (self.function_annotations or []) + (self.residue_annotations or [])
            ]
        return SdkProtein(
            sequence=self.sequence,
            secondary_structure=self.secondary_structure,
            sasa=None if self.sasa is None else list(self.sasa),
            function_annotations=annotations,
            coordinates=None if self.coordinates is None else torch.from_numpy(np.array(self.coordinates, dtype=np.float32)),
            plddt=None if self.plddt is None else torch.from_numpy(np.array(self.plddt, dtype=np.float32)),
            ptm=None if self.ptm is None else torch.tensor(float(self.ptm)),
        )

    @classmethod
    def from_sdk(cls, protein) -> "ESMProtein":
        """An ``esm`` SDK ``ESMProtein`` as ours (tensors become numpy arrays)."""

        def array(t):
            if t is None:
                return None
            if hasattr(t, "detach"):
                t = t.detach().cpu().float().numpy()
            return np.asarray(t, dtype=np.float32)

        annotations = None
        if protein.function_annotations is not None:
            annotations = [FunctionAnnotation(a.label, int(a.start), int(a.end)) for a in protein.function_annotations]
        ptm = protein.ptm
        return cls(
            sequence=protein.sequence,
            secondary_structure=protein.secondary_structure,
            sasa=None if protein.sasa is None else list(protein.sasa),
            function_annotations=annotations,
            coordinates=array(protein.coordinates),
            plddt=array(protein.plddt),
            ptm=None if ptm is None else float(ptm),
        )


@dataclass
class ESMProteinTensor:
    """Token ids per track, ``L + 2`` long (BOS and EOS included), int64 numpy arrays."""

    sequence: Optional[np.ndarray] = None
    structure: Optional[np.ndarray] = None
    secondary_structure: Optional[np.ndarray] = None
    sasa: Optional[np.ndarray] = None
    function: Optional[np.ndarray] = None  # (L + 2, 8)
    residue_annotations: Optional[np.ndarray] = None  # (L + 2, 16)
    coordinates: Optional[np.ndarray] = None  # (L + 2, 37, 3) float32

    def __len__(self) -> int:
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if v is not None:
                return len(v)
        return 0


@dataclass
class GenerationConfig:
    """The SDK's ``GenerationConfig``: one track, decoded by iterative unmasking."""

    track: str = ""
    invalid_ids: Sequence[int] = field(default_factory=list)
    schedule: str = "cosine"
    strategy: str = "random"
    num_steps: int = 20
    temperature: float = 1.0
    temperature_annealing: bool = True
    top_p: float = 1.0
    condition_on_coordinates_only: bool = True
    only_compute_backbone_rmsd: bool = False  # accepted for the SDK's sake; no effect here

    def _json(self) -> str:
        if self.track not in TRACKS:
            raise ValueError(f"GenerationConfig.track is {self.track!r}, expected one of {', '.join(TRACKS)}")
        for name, allowed in (("schedule", ("cosine", "linear")), ("strategy", ("random", "entropy"))):
            if getattr(self, name) not in allowed:
                raise ValueError(f"GenerationConfig.{name} is {getattr(self, name)!r}, expected {' or '.join(allowed)}")
        d = dataclasses.asdict(self)
        d.pop("only_compute_backbone_rmsd")
        d["invalid_ids"] = [int(i) for i in d["invalid_ids"]]
        return json.dumps(d)

    @classmethod
    def _from_json(cls, text: str) -> "GenerationConfig":
        return cls(**json.loads(text))

    @classmethod
    def from_sdk(cls, config) -> "GenerationConfig":
        return cls(**{f.name: getattr(config, f.name) for f in dataclasses.fields(cls) if hasattr(config, f.name)})


def folding_config() -> GenerationConfig:
    """What ``esm3 fold`` runs: structure, entropy order, temperature 0 (deterministic)."""
    return GenerationConfig._from_json(_native.preset_plan("folding")[0])


def inverse_folding_config() -> GenerationConfig:
    """What ``esm3 inverse-fold`` runs: sequence, temperature 0.1, no annealing."""
    return GenerationConfig._from_json(_native.preset_plan("inverse_folding")[0])


def unconditional_plan(length: int, tracks: Iterable[str] = ("sequence", "structure")) -> list:
    """What ``esm3 generate --length N`` runs for ``tracks`` in order."""
    return [GenerationConfig._from_json(c) for c in _native.preset_plan("unconditional", length, list(tracks))]


class Embedding(NamedTuple):
    per_residue: np.ndarray  # (L, d) float32, residues only (no BOS/EOS)
    mean: np.ndarray  # (d,)


class PseudoLikelihood(NamedTuple):
    pll: float
    per_residue: np.ndarray  # log p(x_i | x without i), natural log

    @property
    def mean_log_prob(self) -> float:
        return self.pll / max(len(self.per_residue), 1)

    @property
    def pseudo_perplexity(self) -> float:
        return float(np.exp(-self.mean_log_prob))


ProteinLike = Union[ESMProtein, str]


def _protein(p: ProteinLike) -> ESMProtein:
    if isinstance(p, ESMProtein):
        return p
    if isinstance(p, str):
        return ESMProtein(sequence=p)
    if type(p).__name__ == "ESMProtein" and hasattr(p, "coordinates"):
        return ESMProtein.from_sdk(p)
    raise TypeError(f"expected an ESMProtein or a sequence string, got {type(p).__name__}")


def _plan(config) -> list:
    if isinstance(config, (list, tuple)):
        return [_config(c) for c in config]
    return [_config(config)]


def _config(c) -> str:
    if isinstance(c, GenerationConfig):
        return c._json()
    if type(c).__name__ == "GenerationConfig":
        return GenerationConfig.from_sdk(c)._json()
    raise TypeError(f"expected a GenerationConfig, got {type(c).__name__}")


class Model:
    """A loaded model directory (ESM3 or ESM C). Use :func:`load`."""

    def __init__(self, native: "_native.Model"):
        self._native = native

    def __repr__(self) -> str:
        return f"esm3rs.Model(kind={self.kind!r}, path={self.path!r})"

    @property
    def kind(self) -> str:
        return self._native.kind

    @property
    def path(self) -> str:
        return self._native.path

    # ---- sequence models (ESM3 and ESM C) -------------------------------------------------
    def embed(self, sequences: Union[str, Sequence[str]], batch_size: int = 8):
        """Embeddings as ``esm3 embed`` writes them: one :class:`Embedding` per sequence
        (a single one for a single string). Sequences are batched by length; each result
        equals embedding it alone."""
        single = isinstance(sequences, str)
        out = self._native.embed([sequences] if single else list(sequences), batch_size)
        out = [Embedding(*e) for e in out]
        return out[0] if single else out

    def logits(self, protein: ProteinLike) -> dict:
        """One forward pass: ``{track: (L + 2, vocab) logits, ..., "embeddings": (L + 2, d)}``."""
        return self._native.logits(_protein(protein)._native_fields())

    def score(self, sequence: str, batch_size: int = 8) -> PseudoLikelihood:
        """Pseudo-log-likelihood, as ``esm3 score`` computes it."""
        return PseudoLikelihood(*self._native.pseudo_log_likelihood(sequence, batch_size))

    def masked_marginals(self, sequence: str, variants: Sequence[str], batch_size: int = 8) -> np.ndarray:
        """Masked-marginal score per variant (``"A23V"``, ``"A23V:G45D"``; 1-based), as
        ``esm3 score --mutations``."""
        return np.asarray(self._native.masked_marginals(sequence, list(variants), batch_size))

    # ---- ESM3 -------------------------------------------------------------------------------
    def generate(self, protein: ProteinLike, config, seed: int = 0) -> ESMProtein:
        """Runs a ``GenerationConfig`` (or a list of them, in turn) on the protein's masked
        positions. Same seed, same result as the CLI."""
        return ESMProtein._from_native(self._native.generate(_protein(protein)._native_fields(), _plan(config), int(seed)))

    def generate_batch(self, proteins: Sequence[ProteinLike], config, seeds: Optional[Sequence[int]] = None) -> list:
        """:meth:`generate` for many proteins at once (one forward per step for the batch);
        protein ``i`` uses ``seeds[i]`` (default ``i``) and equals generating it alone."""
        proteins = [_protein(p)._native_fields() for p in proteins]
        seeds = list(range(len(proteins))) if seeds is None else [int(s) for s in seeds]
        return [ESMProtein._from_native(d) for d in self._native.generate_batch(proteins, _plan(config), seeds)]

    def fold(self, sequence: Union[str, ESMProtein], seed: int = 0, relax: bool = True, num_steps: Optional[int] = None) -> ESMProtein:
        """Structure from sequence, as ``esm3 fold``: coordinates, pLDDT, pTM and PAE. The
        backbone is relaxed (as the CLI writes it) unless ``relax=False``; chains of a
        complex (``AAA|BBB``) are relaxed one by one."""
        protein = _protein(sequence)
        config = folding_config()
        if num_steps is not None:
            config.num_steps = num_steps
        out = self.generate(ESMProtein(sequence=protein.sequence), config, seed)
        if relax and out.coordinates is not None and out.plddt is not None:
            out.coordinates = _relax_chains(out.coordinates, out.sequence)
        return out

    def inverse_fold(self, structure: Union[ESMProtein, str, os.PathLike], seed: int = 0, chain_id: Optional[str] = None, config: Optional[GenerationConfig] = None) -> ESMProtein:
        """A sequence for a backbone (an ``ESMProtein`` with coordinates, or a PDB/mmCIF
        path), as ``esm3 inverse-fold``. The native sequence is not shown to the model."""
        if isinstance(structure, (str, os.PathLike)) and not isinstance(structure, ESMProtein):
            structure = ESMProtein.from_pdb(structure, chain_id)
        if structure.coordinates is None:
            raise ValueError("inverse folding needs coordinates")
        prompt = ESMProtein(coordinates=structure.coordinates)
        out = self.generate(prompt, config or inverse_folding_config(), seed)
        out.coordinates = structure.coordinates
        return out

    def encode(self, protein: ProteinLike) -> ESMProteinTensor:
        """Protein → tokens per track (the VQ-VAE encodes coordinates)."""
        return ESMProteinTensor(**self._native.encode(_protein(protein)._native_fields()))

    def decode(self, tensor: ESMProteinTensor) -> ESMProtein:
        """Tokens → protein (structure tokens to coordinates with pLDDT, pTM and PAE)."""
        return ESMProtein._from_native(self._native.decode(dataclasses.asdict(tensor)))


def _relax_chains(coordinates: np.ndarray, sequence: str) -> np.ndarray:
    out = np.array(coordinates, dtype=np.float32, copy=True)
    start = 0
    for end in [i for i, c in enumerate(sequence) if c == "|"] + [len(sequence)]:
        if end > start:
            relaxed, _ = _native.relax_backbone(out[start:end], sequence[start:end])
            out[start:end] = relaxed
        start = end + 1
    return out


def _default_model_dir() -> Path:
    env = os.environ.get("ESM3_MODEL_DIR")
    if env:
        return Path(env)
    for up in [Path.cwd(), *Path.cwd().parents]:
        candidate = up / "models" / "esm3-rs-small"
        if (candidate / "config.json").is_file():
            return candidate
    raise FileNotFoundError(
        "no model directory given, ESM3_MODEL_DIR unset, and no models/esm3-rs-small in this "
        "folder or above it: pass esm3rs.load(path)"
    )


def load(path: Union[str, os.PathLike, None] = None, device: str = "cpu", dtype: str = "f32") -> Model:
    """Loads a model directory (``config.json`` + ``model.safetensors``, memory-mapped).

    ESM3 directories bring their structure encoder/decoder and function decoder when present;
    ESM C directories run ``embed``, ``logits`` and ``score``. ``dtype="bf16"`` multiplies in
    bf16 on CPUs with AVX512-BF16. Without ``path``: ``$ESM3_MODEL_DIR``, else the bundled
    ``models/esm3-rs-small`` of the repository the current folder is in.
    """
    path = _default_model_dir() if path is None else Path(path)
    return Model(_native.Model(os.fspath(path), device, dtype))
