"""esm3rs: ESM3 and ESM C in Rust, from Python.

The names follow EvolutionaryScale's ``esm`` SDK (``ESMProtein``, ``GenerationConfig``,
``FunctionAnnotation``, track names), arrays are numpy, and every computing call releases the
GIL, so threads run models side by side::

    import esm3rs
    model = esm3rs.load("models/esm3-rs-small")
    protein = model.fold("MKTAYIAKQRQISFVKSHFSRQ")
    protein.to_pdb("fold.pdb")                 # pLDDT x 100 in the B-factor column
    emb = model.embed(["MKTAYIAKQR", "GSHMSE"])  # [Embedding(per_residue, mean), ...]

The engine is the same library the ``esm3`` binary runs: ``embed``, ``score``, ``fold``,
``inverse_fold``, ``design`` (``esm3 generate``, complexity retries and motifs included) and
``encode`` give the CLI's output for the same weights, inputs and seed. ``generate`` is the
SDK's single call: one plan on one prompt, no retries.
"""

from __future__ import annotations

import dataclasses
import json
import os
import warnings
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
    "Design",
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
        """Writes a PDB file as ``esm3 fold`` does: pLDDT x 100 as B-factor, a complex
        (``AAA|BBB``) as chains A, B, ... each numbered from 1."""
        if self.coordinates is None:
            raise ValueError("the protein has no coordinates to write")
        masked = [i + 1 for i, c in enumerate(self.sequence or "") if c == "_"]
        if masked:
            raise ValueError(f"positions {masked[:10]}{' ...' if len(masked) > 10 else ''} (1-based) are still masked (`_`): generate the sequence first, as `esm3` writes no structure for it")
        sequence = self.sequence or "X" * len(self)
        plddt = None if self.plddt is None else [float(v) for v in self.plddt]
        unknown = _native.write_pdb(os.fspath(path), sequence, _float32_atoms(self.coordinates, "coordinates"), plddt)
        if unknown:
            warnings.warn(f"{os.fspath(path)}: sequence letters without a residue name at positions {unknown} (1-based) are UNK in the file")

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

        The SDK keeps residue annotations in ``function_annotations``, so they join that list
        (after the function annotations); :meth:`from_sdk` with the model's
        ``residue_annotation_labels`` splits them again. The PAE has no field there and is
        dropped.
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
    def from_sdk(cls, protein, residue_labels: Iterable[str] = ()) -> "ESMProtein":
        """An ``esm`` SDK ``ESMProtein`` as ours (tensors become numpy arrays). Annotations
        whose label is in ``residue_labels`` (a model's ``residue_annotation_labels``) become
        ``residue_annotations``; the rest stay ``function_annotations``."""

        def array(t):
            if t is None:
                return None
            if hasattr(t, "detach"):
                t = t.detach().cpu().float().numpy()
            return np.asarray(t, dtype=np.float32)

        function = residue = None
        if protein.function_annotations is not None:
            residue_labels = set(residue_labels)
            ours = [FunctionAnnotation(a.label, int(a.start), int(a.end)) for a in protein.function_annotations]
            function = [a for a in ours if a.label not in residue_labels]
            residue = [a for a in ours if a.label in residue_labels] or None
            if not function and residue:
                function = None
        ptm = protein.ptm
        return cls(
            sequence=protein.sequence,
            secondary_structure=protein.secondary_structure,
            sasa=None if protein.sasa is None else list(protein.sasa),
            function_annotations=function,
            coordinates=array(protein.coordinates),
            plddt=array(protein.plddt),
            ptm=None if ptm is None else float(ptm),
            residue_annotations=residue,
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
        # numpy scalars and the like become the JSON numbers the engine reads.
        try:
            d["invalid_ids"] = [int(i) for i in d["invalid_ids"]]
            d["num_steps"] = _count("GenerationConfig.num_steps", d["num_steps"])
            for name in ("temperature", "top_p"):
                d[name] = float(d[name])
        except (TypeError, ValueError) as e:
            raise ValueError(f"GenerationConfig: {e}") from None
        for name in ("temperature_annealing", "condition_on_coordinates_only"):
            d[name] = bool(d[name])
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


_U64_MAX = 2**64 - 1


def _real(what: str, value) -> float:
    """A real-number argument (numpy floats too), or ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{what} must be a number, got {value!r}")
    return float(value)


def _count(what: str, value, minimum: int = 0, maximum: int = 2**63 - 1) -> int:
    """An integer argument (numpy integers too) in ``minimum..=maximum``, or ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        if isinstance(value, (float, np.floating)) and float(value).is_integer():
            value = int(value)
        else:
            raise ValueError(f"{what} must be an integer, got {value!r}")
    value = int(value)
    if value < minimum:
        raise ValueError(f"{what} must be at least {minimum}, got {value}")
    if value > maximum:
        raise ValueError(f"{what} must be at most {maximum}, got {value}")
    return value


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


class Design(NamedTuple):
    """One design of :meth:`Model.design`, as ``esm3 generate`` writes it."""

    protein: ESMProtein
    seed: int  # the attempt's seed
    attempts: int
    passed: bool  # the complexity check; when no attempt passed, the least repetitive one
    complexity: Optional[dict]  # as in the CLI's JSON (None while the sequence is masked)
    rejected_attempts: list  # [{"seed", "sequence", "complexity"}]
    motif_rmsd: list  # per motif, backbone RMSD before the motif was written back (Å)


ProteinLike = Union[ESMProtein, str]


def _protein(p: ProteinLike, residue_labels: Iterable[str] = ()) -> ESMProtein:
    if isinstance(p, ESMProtein):
        return p
    if isinstance(p, str):
        return ESMProtein(sequence=p)
    if type(p).__name__ == "ESMProtein" and hasattr(p, "coordinates"):
        return ESMProtein.from_sdk(p, residue_labels)
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

    @property
    def residue_annotation_labels(self) -> list:
        """The residue-annotation vocabulary (empty when the directory has none)."""
        return self._native.residue_annotation_labels

    def _protein(self, p: ProteinLike) -> ESMProtein:
        if isinstance(p, (ESMProtein, str)):
            return p if isinstance(p, ESMProtein) else ESMProtein(sequence=p)
        return _protein(p, self.residue_annotation_labels)  # an SDK protein

    # ---- sequence models (ESM3 and ESM C) -------------------------------------------------
    def embed(self, sequences: Union[str, Sequence[str]], batch_size: int = 8):
        """Embeddings as ``esm3 embed`` writes them: one :class:`Embedding` per sequence
        (a single one for a single string). Sequences are batched by length; a result equals
        embedding the sequence alone up to float rounding (other batch shapes, other sums)."""
        single = isinstance(sequences, str)
        out = self._native.embed([sequences] if single else list(sequences), _count("batch_size", batch_size, 1))
        out = [Embedding(*e) for e in out]
        return out[0] if single else out

    def logits(self, protein: ProteinLike) -> dict:
        """One forward pass: ``{track: (L + 2, vocab) logits, ..., "embeddings": (L + 2, d)}``."""
        return self._native.logits(self._protein(protein)._native_fields())

    def score(self, sequence: str, batch_size: int = 8) -> PseudoLikelihood:
        """Pseudo-log-likelihood, as ``esm3 score`` computes it."""
        return PseudoLikelihood(*self._native.pseudo_log_likelihood(sequence, _count("batch_size", batch_size, 1)))

    def masked_marginals(self, sequence: str, variants: Sequence[str], batch_size: int = 8) -> np.ndarray:
        """Masked-marginal score per variant (``"A23V"``, ``"A23V:G45D"``; 1-based), as
        ``esm3 score --mutations``."""
        return np.asarray(self._native.masked_marginals(sequence, list(variants), _count("batch_size", batch_size, 1)))

    # ---- ESM3 -------------------------------------------------------------------------------
    def generate(self, protein: ProteinLike, config, seed: int = 0) -> ESMProtein:
        """The SDK's ``generate``: runs a ``GenerationConfig`` (or a list of them, in turn) on
        the protein's masked positions, once. For designs as ``esm3 generate`` makes them
        (complexity retries, motifs, relaxed backbones) use :meth:`design`."""
        fields = self._protein(protein)._native_fields()
        return ESMProtein._from_native(self._native.generate(fields, _plan(config), _count("seed", seed, maximum=_U64_MAX)))

    def generate_batch(self, proteins: Sequence[ProteinLike], config, seeds: Optional[Sequence[int]] = None) -> list:
        """:meth:`generate` for many proteins at once (one forward per step for the batch);
        protein ``i`` uses ``seeds[i]`` (default ``i``) and equals generating it alone."""
        proteins = [self._protein(p)._native_fields() for p in proteins]
        seeds = list(range(len(proteins))) if seeds is None else [_count("seed", s, maximum=_U64_MAX) for s in seeds]
        return [ESMProtein._from_native(d) for d in self._native.generate_batch(proteins, _plan(config), seeds)]

    def design(
        self,
        length: Optional[int] = None,
        *,
        prompt: Union[str, os.PathLike, ESMProtein, None] = None,
        n: int = 1,
        seed: int = 0,
        tracks: Optional[Iterable[str]] = None,
        plan=None,
        num_steps: Optional[int] = None,
        temperature: Optional[float] = None,
        strategy: Optional[str] = None,
        schedule: Optional[str] = None,
        top_p: Optional[float] = None,
        annealing: bool = True,
        max_attempts: int = 4,
        max_low_complexity: Optional[float] = None,
        max_homopolymer: Optional[int] = None,
        batch_size: int = 8,
        relax: bool = True,
    ) -> list:
        """``esm3 generate``: ``n`` designs of ``length`` residues (``tracks`` in order, default
        sequence then structure) or of a ``prompt`` (a TOML/JSON prompt file, motifs included,
        or an ``ESMProtein`` with ``_`` where to design and a ``plan``). ``plan`` (a
        ``GenerationConfig`` or a list) replaces the prompt's; ``num_steps``, ``temperature``,
        ``strategy``, ``schedule``, ``top_p`` and ``annealing=False`` then apply to each step,
        as the CLI's flags of those names. Design ``i`` attempt ``k`` uses seed ``seed + i +
        k*n``; a design whose sequence is too repetitive is generated again, up to
        ``max_attempts`` in all. Backbones are relaxed as the CLI writes them (motif residues
        kept) unless ``relax=False``. The same arguments as the CLI's give its designs.
        Returns :class:`Design`\ s."""
        if (length is None) == (prompt is None):
            raise ValueError("give a length or a prompt (a prompt file or an ESMProtein), not both")
        if tracks is not None and (prompt is not None or plan is not None):
            raise ValueError("tracks applies to a length without a plan; a prompt file or a plan says its tracks")
        if plan is not None:
            configs = [GenerationConfig._from_json(c) for c in _plan(plan)]
        elif length is not None:
            tracks = list(tracks or ()) or ["sequence", "structure"]
            configs = unconditional_plan(_count("length", length, 1), tracks)
        elif isinstance(prompt, (str, os.PathLike)):
            configs = [GenerationConfig._from_json(c) for c in _native.prompt_plan(os.fspath(prompt))]
        else:
            raise ValueError("an ESMProtein prompt needs a plan: the GenerationConfigs to run")
        if not configs:
            raise ValueError("the plan is empty: give at least one GenerationConfig")
        overrides = {
            "num_steps": None if num_steps is None else _count("num_steps", num_steps, 1),
            "temperature": None if temperature is None else _real("temperature", temperature),
            "strategy": strategy,
            "schedule": schedule,
            "top_p": None if top_p is None else _real("top_p", top_p),
            "temperature_annealing": None if annealing else False,
        }
        overrides = {k: v for k, v in overrides.items() if v is not None}
        native_plan = [dataclasses.replace(c, **overrides)._json() for c in configs]
        kwargs = dict(
            plan=native_plan,
            n=_count("n", n, 1),
            seed=_count("seed", seed, maximum=_U64_MAX),
            max_attempts=_count("max_attempts", max_attempts, 1),
            max_low_complexity=None if max_low_complexity is None else _real("max_low_complexity", max_low_complexity),
            max_homopolymer=None if max_homopolymer is None else _count("max_homopolymer", max_homopolymer),
            batch_size=_count("batch_size", batch_size, 1),
        )
        if length is not None:
            out = self._native.design(length=_count("length", length, 1), **kwargs)
        elif isinstance(prompt, (str, os.PathLike)):
            out = self._native.design(prompt_file=os.fspath(prompt), **kwargs)
        else:
            out = self._native.design(protein=self._protein(prompt)._native_fields(), **kwargs)
        designs = []
        for d in out:
            protein = ESMProtein._from_native(d["protein"])
            if relax and _written_as_relaxed(protein):
                protein.coordinates = _relax_chains(protein.coordinates, protein.sequence, d["motif_positions"])
            summary = json.loads(d["summary"])
            designs.append(Design(protein, d["seed"], d["attempts"], d["passed"], summary["complexity"], summary["rejected_attempts"], d["motif_rmsd"]))
        return designs

    def fold(self, sequence: Union[str, ESMProtein], seed: int = 0, relax: bool = True, num_steps: Optional[int] = None) -> ESMProtein:
        """Structure from sequence, as ``esm3 fold``: coordinates, pLDDT, pTM and PAE. The
        backbone is relaxed (as the CLI writes it) unless ``relax=False``; chains of a
        complex (``AAA|BBB``) are relaxed one by one."""
        protein = self._protein(sequence)
        if protein.sequence is None:
            raise ValueError("folding needs a sequence")
        config = folding_config()
        if num_steps is not None:
            config.num_steps = _count("num_steps", num_steps, 1)
        out = ESMProtein._from_native(self._native.fold(protein.sequence, config._json(), _count("seed", seed, maximum=_U64_MAX)))
        if relax and _written_as_relaxed(out):
            out.coordinates = _relax_chains(out.coordinates, out.sequence)
        return out

    def inverse_fold(
        self,
        structure: Union[ESMProtein, str, os.PathLike],
        seed: int = 0,
        chain_id: Union[str, Sequence[str], None] = None,
        fix: Sequence[str] = (),
        config: Optional[GenerationConfig] = None,
    ) -> ESMProtein:
        """A sequence for a backbone, as ``esm3 inverse-fold``: an ``ESMProtein`` with
        coordinates (a complex as ``AAA|BBB``, breaks without coordinates) or a PDB/mmCIF path.
        ``chain_id`` picks chains of the file (several: designed as one complex); chains in
        ``fix`` keep their native sequence. The native sequence of designed chains is not shown
        to the model. Returns the designed sequence with the input coordinates (no pLDDT or
        pTM: the model did not predict this structure)."""
        if isinstance(structure, (str, os.PathLike)):
            chains = [] if chain_id is None else [chain_id] if isinstance(chain_id, str) else list(chain_id)
            fix = [fix] if isinstance(fix, str) else list(fix)
            _, _, prompt_sequence, coordinates, _ = _native.inverse_folding_input(os.fspath(structure), chains, fix)
        else:
            structure = self._protein(structure)
            if structure.coordinates is None:
                raise ValueError("inverse folding needs coordinates")
            if chain_id is not None or fix:
                raise ValueError("chain_id and fix pick chains of a structure file; an ESMProtein is designed whole")
            coordinates = structure.coordinates
            sequence = structure.sequence or ""
            prompt_sequence = "".join("|" if c == "|" else "_" for c in sequence) if "|" in sequence else None
        prompt = ESMProtein(sequence=prompt_sequence, coordinates=coordinates)
        out = self.generate(prompt, config or inverse_folding_config(), seed)
        return ESMProtein(sequence=out.sequence, coordinates=coordinates)

    def encode(self, protein: ProteinLike) -> ESMProteinTensor:
        """Protein → tokens per track (the VQ-VAE encodes coordinates)."""
        return ESMProteinTensor(**self._native.encode(self._protein(protein)._native_fields()))

    def decode(self, tensor: ESMProteinTensor) -> ESMProtein:
        """Tokens → protein (structure tokens to coordinates with pLDDT, pTM and PAE)."""
        return ESMProtein._from_native(self._native.decode(dataclasses.asdict(tensor)))


def _written_as_relaxed(p: ESMProtein) -> bool:
    """What the CLI relaxes before writing: decoded coordinates (they come with pLDDT) of a
    sequence without masked positions."""
    return p.coordinates is not None and p.plddt is not None and p.sequence is not None and "_" not in p.sequence


def _relax_chains(coordinates: np.ndarray, sequence: str, fixed: Sequence[int] = ()) -> np.ndarray:
    """Relaxes each chain of ``AAA|BBB`` alone (no bonds across a break), residues in ``fixed``
    (0-based over the whole sequence) kept, as ``esm3 generate`` writes designs."""
    return _native.relax_chains(np.asarray(coordinates, dtype=np.float32), sequence, list(fixed))


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
