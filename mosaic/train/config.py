"""Training configuration: YAML validated into nested dataclasses.

A config file is a mapping with one section per dataclass below (``data``, ``model``,
``sampler``, ``optim``, ``loss``, ``augment``, ``routing``, ``eval``, ``run``). Every key is checked
against the dataclass fields by :mod:`mosaic.core.settings` (the one validation engine of all
settings objects): an unknown key is an error that names it and suggests the closest valid key,
and a value of the wrong type is an error that names the key and the expected type. ``--set section.key=value`` overrides go through the same checks, with the
value parsed as YAML (``--set optim.lr=3e-4``, ``--set eval.routers=[oracle,none]``).

The ``model`` section holds the fields of :class:`mosaic.model.ModelConfig`; it is imported
lazily so that reading and validating a config does not import torch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import yaml

from mosaic.core.errors import MosaicError
from mosaic.core.jsonsafe import jsonable
from mosaic.core.settings import build, field_names, field_types, unknown_key_message
from mosaic.core.signals import DEFAULT_STOP_SIGNALS, to_signals

# ----------------------------------------------------------------------------- sections


@dataclass
class DataConfig:
    """Where the images and attribute annotations are (see :func:`mosaic.data.load_dataset`)."""

    root: str = "worlds/default"
    format: str | None = None  # market1501 | dukemtmc | manifest; None = detect from the folder
    attributes: str | None = None  # Lin et al. .mat file; None = beside the dataset, then the download cache
    schema: str | None = None  # shipped schema name or YAML file; None = the format's default
    cache_dir: str | None = None  # decoded-image cache; None = RUN/images


@dataclass
class SamplerConfig:
    """P identities x K images per step (per process when training on several GPUs)."""

    p: int = 16
    k: int = 4


@dataclass
class OptimConfig:
    """Optimiser and learning-rate schedule. ``steps``/``warmup_steps`` win over the epoch counts when set."""

    name: Literal["adamw", "adam", "sgd"] = "adamw"
    lr: float = 3.5e-4  # the backbone's rate (for pretrained weights: the fine-tuning rate)
    new_lr: float | None = None  # experts, router heads, BNNeck, classifier; None = lr
    bias_lr_factor: float = 1.0  # biases learn this many times faster (CLIP-ReID: 2)
    weight_decay: float = 1e-4
    momentum: float = 0.9  # SGD only
    betas: tuple[float, float] = (0.9, 0.999)  # Adam and AdamW only
    epochs: int = 120
    steps: int | None = None
    warmup_epochs: float = 10.0
    warmup_steps: int | None = None
    warmup_factor: float = 0.01  # the learning rate starts at lr * warmup_factor
    schedule: Literal["cosine", "step", "constant"] = "cosine"
    min_lr_factor: float = 0.01  # cosine ends at lr * min_lr_factor
    milestones: tuple[float, ...] = (40.0, 70.0)  # step schedule, in epochs
    gamma: float = 0.1  # step schedule decay per milestone
    no_decay_norm_bias: bool = True  # no weight decay on biases, norms, position/class tokens
    clip_grad_norm: float | None = None


@dataclass
class LossConfig:
    """ID cross-entropy (label-smoothed) + batch-hard triplet + learned-router attribute loss."""

    id_weight: float = 1.0
    label_smoothing: float = 0.1
    triplet_weight: float = 1.0
    triplet_margin: float | None = 0.3  # None = soft margin (log(1 + exp(d_ap - d_an)))
    attribute_weight: float = 0.5  # only used when the model has a learned router


@dataclass
class AugmentConfig:
    """Batch-wise augmentation applied on the training device (see :mod:`mosaic.train.augment`)."""

    flip_prob: float = 0.5
    pad: int = 10  # pad-and-random-crop margin in pixels; 0 disables
    erase_prob: float = 0.5
    erase_area: tuple[float, float] = (0.02, 0.4)
    erase_aspect: tuple[float, float] = (0.3, 3.3)
    erase_fill: Literal["pixel", "channel", "zero"] = "pixel"


@dataclass
class RoutingConfig:
    """How the oracle routes experts during training.

    Every routing a trace evaluates should also occur in training, or its score measures an
    input the model never saw rather than what it relies on. Per sample and group:

    - ``group_dropout``: the group's experts are off with this probability (as if the group
      were unannotated): the routings of ``drop:``, ``only:`` and ``subset:``. Without it a model
      trained from scratch can identify the training identities from the oracle's attribute
      code alone and never learn to see; with it the backbone must carry identity by itself.
    - ``fixed_prob``: the group is routed by its fixed gates (each expert weighted by its
      state's share among the training identities) with this probability: the routing of
      ``fixed:`` and of unannotated images in a model without a learned router. Drawn from the
      same uniform number as the dropout, so the two never coincide (their sum must stay < 1).

    and per sample:

    - ``all_off_prob``: every expert is off with this probability: the ``none`` routing, which
      group dropout alone reaches only with probability ``group_dropout ** G``.
    """

    group_dropout: float = 0.0
    fixed_prob: float = 0.0
    all_off_prob: float = 0.0

    def __post_init__(self) -> None:
        for name in ("group_dropout", "fixed_prob", "all_off_prob"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise MosaicError(f"routing.{name} must be in [0, 1), got {value}")
        if self.group_dropout + self.fixed_prob >= 1.0:
            raise MosaicError(
                f"routing.group_dropout + routing.fixed_prob must be < 1 (some groups must keep their own "
                f"state), got {self.group_dropout} + {self.fixed_prob}"
            )


@dataclass
class EvalConfig:
    """Evaluation: on held-out training identities during training, on the test split at the end.

    The test split (query/gallery) is read once, after the last step, and chooses nothing; see
    :mod:`mosaic.train.validation` for the rule that builds the validation split.
    """

    every: int = 0  # epochs between validation evaluations (needs val_ids); 0 = none during training
    val_ids: float = 0.0  # training identities held out for validation: a count, or a fraction in (0, 1)
    routers: tuple[str, ...] = ("oracle", "none", "learned")  # 'learned' is skipped without a learned router
    feature: Literal["bn", "pre_bn"] = "bn"  # features after or before the BNNeck
    batch_size: int = 256
    max_rank: int = 50
    best_router: str = "oracle"  # the router whose validation mAP picks checkpoints/best.pt


@dataclass
class RunConfig:
    """Everything about how the run executes, not what it learns."""

    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    out: str | None = None  # run directory; None = runs/<config file stem>
    amp: bool = True  # bf16 autocast on CUDA; CPU runs always use fp32
    compile: bool = False  # torch.compile the step's routing, forward pass and loss as one graph (pays on CUDA)
    cuda_graphs: bool = False  # with compile on CUDA: capture that graph as CUDA graphs ("reduce-overhead")
    log_every: int = 20  # steps between metrics.jsonl loss lines
    checkpoint_every: int = 1  # epochs between checkpoints/last.pt writes (and at the end)
    threads: int | None = None  # torch intra-op threads on the CPU; None = torch's default
    cache_on_device: bool | None = None  # keep the uint8 image cache on the GPU; None = yes on CUDA
    find_unused_parameters: bool = False  # DistributedDataParallel option
    # signals that checkpoint and stop the run at the next step (mosaic.train.interrupt; docs/cluster.md)
    stop_signals: tuple[str, ...] = DEFAULT_STOP_SIGNALS

    def __post_init__(self) -> None:
        self.stop_signals = tuple(s.name for s in to_signals(self.stop_signals))


def _model_config_class() -> type:
    from mosaic.model import ModelConfig

    return ModelConfig


@dataclass
class TrainConfig:
    """The resolved configuration of one training run."""

    data: DataConfig = field(default_factory=DataConfig)
    model: Any = None  # mosaic.model.ModelConfig; filled in by from_dict
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    routing: RoutingConfig = field(default_factory=RoutingConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def __post_init__(self) -> None:
        if self.model is None:
            self.model = _model_config_class()()

    # ------------------------------------------------------------------ io
    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "TrainConfig":
        """Validate a nested mapping (unknown keys and wrong types raise :class:`MosaicError`)."""
        return _build(cls, data, "")

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (tuples become lists) that YAML and JSON can hold."""
        return jsonable(_asdict_with_model(self))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def validate(self) -> "TrainConfig":
        """Cross-field checks that single-field types cannot express."""
        checks = [
            (self.sampler.p >= 2, "sampler.p must be at least 2 (the triplet loss needs negatives)"),
            (self.sampler.k >= 2, "sampler.k must be at least 2 (the triplet loss needs positives)"),
            (self.optim.lr > 0, "optim.lr must be positive"),
            (self.optim.new_lr is None or self.optim.new_lr > 0, "optim.new_lr must be positive or null (= optim.lr)"),
            (self.optim.bias_lr_factor > 0, "optim.bias_lr_factor must be positive"),
            (self.optim.steps is None or self.optim.steps > 0, "optim.steps must be positive or null"),
            (self.optim.epochs > 0, "optim.epochs must be positive"),
            (0 <= self.loss.label_smoothing < 1, "loss.label_smoothing must be in [0, 1)"),
            (0 <= self.augment.flip_prob <= 1, "augment.flip_prob must be in [0, 1]"),
            (0 <= self.augment.erase_prob <= 1, "augment.erase_prob must be in [0, 1]"),
            (0 <= self.routing.group_dropout < 1, "routing.group_dropout must be in [0, 1)"),
            (self.augment.pad >= 0, "augment.pad must be >= 0"),
            (self.run.log_every > 0, "run.log_every must be positive"),
            (self.run.checkpoint_every > 0, "run.checkpoint_every must be positive"),
            (self.run.compile or not self.run.cuda_graphs, "run.cuda_graphs captures the compiled step: "
             "set run.compile=true as well, or run.cuda_graphs=false"),
            (self.eval.every >= 0, "eval.every must be >= 0 (0 = only at the end)"),
            (self.eval.val_ids >= 0, "eval.val_ids must be >= 0 (a count of identities, or a fraction in (0, 1))"),
            (not self.eval.every or self.eval.val_ids > 0, "eval.every evaluates during training on held-out training "
             "identities, never on the test split: set eval.val_ids (e.g. 0.1) or eval.every=0"),
            # an untrained 'learned' condition, and DDP stops on the router's gradient-free parameters
            (not getattr(self.model, "learned_router", False) or self.loss.attribute_weight, "model.learned_router is "
             "true but loss.attribute_weight is 0, so the router never learns (and multi-GPU training stops on its "
             "gradient-free parameters): give loss.attribute_weight > 0 or set model.learned_router=false"),
        ]
        for ok, message in checks:
            if not ok:
                raise MosaicError(message)
        from mosaic.core.router_names import ROUTER_NAMES  # the registry: routers registered from user code count

        unknown = [r for r in self.eval.routers if r not in ROUTER_NAMES]
        if unknown:
            raise MosaicError(f"eval.routers has unknown router {unknown[0]!r}: use any of {list(ROUTER_NAMES)}")
        return self


# ----------------------------------------------------------------------------- loading


def load_config(
    path: str | Path | None = None,
    overrides: Sequence[str] = (),
    *,
    base: Mapping[str, Any] | None = None,
) -> TrainConfig:
    """Read a YAML config (or start from ``base``), apply ``key=value`` overrides, validate.

    ``path`` is a YAML file or the name of a shipped config (:mod:`mosaic.configs`).

    >>> cfg = load_config("synthetic_micro", ["optim.lr=1e-3"])  # doctest: +SKIP
    """
    raw: dict[str, Any] = {}
    if base is not None:
        raw = _deep_copy(base)
    if path is not None:
        raw = _deep_merge(raw, read_yaml_mapping(path))
    for item in overrides:
        key, value = parse_override(item)
        set_dotted(raw, key, value)
    return TrainConfig.from_dict(raw).validate()


def read_yaml_mapping(path: str | Path) -> dict[str, Any]:
    from mosaic.configs import config_path

    path = config_path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "syntax error"
        raise MosaicError(f"config file {path} is not valid YAML ({first}): fix the syntax") from None
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise MosaicError(f"config file {path} must be a mapping of sections (data, model, optim, ...)")
    return dict(data)


def parse_override(item: str) -> tuple[str, Any]:
    """``"optim.lr=3e-4"`` -> ``("optim.lr", 0.0003)``; the value is parsed as YAML."""
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise MosaicError(f"--set {item!r} is not key=value: write e.g. --set optim.lr=3e-4")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError:
        value = text  # an unquoted string YAML cannot parse is meant as a string
    return key, value


def set_dotted(raw: dict[str, Any], key: str, value: Any) -> None:
    """Set ``raw[a][b] = value`` for ``key = "a.b"``, checking every part against the dataclasses."""
    parts = key.split(".")
    cls: Any = TrainConfig
    node = raw
    for depth, part in enumerate(parts):
        names = field_names(cls)
        if part not in names:
            where = ".".join(parts[:depth]) or "the config"
            raise MosaicError(f"--set {key}: {unknown_key_message(part, names, where)}")
        ftype = field_types(cls)[part]
        sub = _section_class(cls, part, ftype)
        if depth == len(parts) - 1:
            if sub is not None and not isinstance(value, Mapping):
                example = field_names(sub)[0]
                raise MosaicError(f"--set {key}: {key} is a section; set one of its keys, e.g. --set {key}.{example}=...")
            node[part] = value
            return
        if sub is None:
            raise MosaicError(f"--set {key}: {'.'.join(parts[: depth + 1])} is a value, not a section")
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node, cls = child, sub


# ----------------------------------------------------------------------------- validation (mosaic.core.settings)


def _section_class(owner: type, name: str, ftype: Any) -> type | None:
    """The settings class of a config section; ``model`` is typed Any here to keep torch out."""
    if owner is TrainConfig and name == "model":
        return _model_config_class()
    return ftype if dataclasses.is_dataclass(ftype) else None


def _build(cls: type, data: Any, prefix: str) -> Any:
    return build(cls, data, prefix, nested=_section_class)


# ----------------------------------------------------------------------------- helpers


def _asdict_with_model(cfg: TrainConfig) -> dict[str, Any]:
    out = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if f.name == "model" and hasattr(value, "to_dict"):
            out[f.name] = value.to_dict()
        else:
            out[f.name] = dataclasses.asdict(value)
    return out


def _deep_copy(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {k: _deep_copy(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_deep_copy(v) for v in obj]
    return obj


def _deep_merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _deep_merge(dict(out[key]), value)
        else:
            out[key] = _deep_copy(value)
    return out
