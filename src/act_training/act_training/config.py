"""Configuration for ACT training: dataclasses validated in `__post_init__`, named presets.

    cfg = make_config("cpu", overrides=["model.hidden_dim=128", "train.steps=500"])

Sections: `model` (the network and its loss), `data` (the demo file, cameras, split,
augmentation) and `train` (optimisation, logging, checkpoints). Every field can be overridden
from the command line with `--set section.field=value` (values parsed as YAML: `128`, `1e-4`,
`true`, `[96, 96]`, `null`). Presets (see docs/training.md for the reasoning behind each size):

    paper  the seed reference's table (chunk 100, hidden 512, 8 heads, 4 encoder layers,
           lr 1e-4, batch 32, kl 0.1) with ACT's 7 decoder layers and 3200-wide FFN; for GPUs.
    cpu    sized for the main job: ~10 minutes on 2 CPU cores (96 px, one camera, d256/ff1024,
           2 encoder / 1 decoder layers, 2-layer CVAE encoder, chunk 50).
    tiny   a few seconds; for tests.

`model.camera_names`, `model.state_dim` and `model.action_dim` describe the data and are filled
in from the demo file when left empty.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import asdict, dataclass, field, fields

import yaml

BACKBONES = ("resnet18", "resnet34")
BACKBONE_NORMS = ("group", "batch", "frozen_batch")
SCHEDULES = ("cosine", "constant")
AMP_MODES = ("auto", "bf16", "off")


class ConfigError(ValueError):
    """An invalid configuration value or override."""


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


@dataclass
class ModelConfig:
    """The network and its loss: input description (cameras, state/action dims, image size and
    crop), ACT/CVAE sizes, backbone and kl_weight."""

    # --- what the data looks like (filled from the demo file when empty / 0) ---
    camera_names: tuple[str, ...] = ()
    state_dim: int = 0
    action_dim: int = 0
    image_size: tuple[int, int] | None = (96, 96)  # (H, W) fed to the network; None = the file's
    # (top, left, height, width) of the camera frame, as fractions, cut out before resizing to
    # image_size: spends the pixels on the workspace. None = the whole frame. The crop is taken
    # after the mirror map's flip, so a left-half crop sees arm 0's side, or mirrored arm 1's.
    crop: tuple[float, float, float, float] | None = None
    # --- ACT ---
    chunk_size: int = 50
    hidden_dim: int = 256
    n_heads: int = 8
    dim_feedforward: int = 1024
    n_encoder_layers: int = 2
    n_decoder_layers: int = 1
    dropout: float = 0.1
    pre_norm: bool = False
    # --- vision backbone ---
    backbone: str = "resnet18"
    backbone_norm: str = "batch"  # batch (fastest on CPU) | group | frozen_batch (pretrained weights)
    backbone_weights: str = ""  # optional local torchvision state_dict file (no downloads here)
    shared_backbone: bool = True  # one trunk for every camera, or one per camera
    backbone_layers: int = 4  # ResNet stages kept (4 = full trunk, stride 32; 2 = stride 8, for tests)
    # --- CVAE ---
    use_vae: bool = True
    latent_dim: int = 32
    n_vae_encoder_layers: int = 2
    kl_weight: float = 10.0

    def __post_init__(self):
        self.camera_names = tuple(str(c) for c in self.camera_names)
        if self.image_size is not None:
            _check(len(self.image_size) == 2, f"model.image_size must be [H, W], got {self.image_size}")
            self.image_size = (int(self.image_size[0]), int(self.image_size[1]))
            _check(min(self.image_size) >= 16, f"model.image_size {self.image_size}: at least 16 px")
        if self.crop is not None:
            _check(len(self.crop) == 4, f"model.crop must be [top, left, height, width], got {self.crop}")
            self.crop = tuple(float(v) for v in self.crop)
            t, lf, h, w = self.crop
            _check(t >= 0 and lf >= 0 and h > 0 and w > 0 and t + h <= 1.0 + 1e-9 and lf + w <= 1.0 + 1e-9,
                   f"model.crop {self.crop}: fractions of the frame, top+height and left+width <= 1")
        _check(self.state_dim >= 0 and self.action_dim >= 0, "model.state_dim/action_dim must be >= 0")
        _check(self.chunk_size >= 1, f"model.chunk_size must be >= 1, got {self.chunk_size}")
        _check(self.hidden_dim >= 2 and self.hidden_dim % 2 == 0, "model.hidden_dim must be even")
        _check(self.n_heads >= 1 and self.hidden_dim % self.n_heads == 0,
               f"model.hidden_dim {self.hidden_dim} must be divisible by n_heads {self.n_heads}")
        _check(self.dim_feedforward >= 1, "model.dim_feedforward must be >= 1")
        _check(self.n_encoder_layers >= 1, "model.n_encoder_layers must be >= 1")
        _check(self.n_decoder_layers >= 1, "model.n_decoder_layers must be >= 1")
        _check(0.0 <= self.dropout < 1.0, f"model.dropout must be in [0, 1), got {self.dropout}")
        _check(self.backbone in BACKBONES, f"model.backbone must be one of {BACKBONES}")
        _check(self.backbone_norm in BACKBONE_NORMS, f"model.backbone_norm must be one of {BACKBONE_NORMS}")
        _check(1 <= self.backbone_layers <= 4, "model.backbone_layers must be in 1..4")
        _check(self.latent_dim >= 1, "model.latent_dim must be >= 1")
        _check(not self.use_vae or self.n_vae_encoder_layers >= 1, "model.n_vae_encoder_layers must be >= 1")
        _check(self.kl_weight >= 0.0, "model.kl_weight must be >= 0")

    @property
    def frame_size(self) -> tuple[int, int] | None:
        """(H, W) of the camera frame that gives `image_size` after the crop without resampling
        (what to render or resize camera frames to); `image_size` when there is no crop."""
        if self.image_size is None or self.crop is None:
            return self.image_size
        return (round(self.image_size[0] / self.crop[2]), round(self.image_size[1] / self.crop[3]))

    @property
    def num_cameras(self) -> int:
        return len(self.camera_names)

    def is_complete(self) -> bool:
        """True when the data-dependent fields (cameras, state/action dims, image size) are filled."""
        return bool(self.camera_names) and self.state_dim > 0 and self.action_dim > 0 and bool(
            self.image_size)


@dataclass
class DataConfig:
    """The demo file and how samples are drawn from it: cameras, episode split, normalisation
    floor, loader workers, image augmentation and mirror augmentation."""

    path: str = ""  # the demo HDF5 file
    cameras: tuple[str, ...] = ()  # cameras to use, in order; empty = every camera in the file
    max_cameras: int = 0  # keep only the first N of those (0 = all); cpu preset: 1 (the top camera)
    val_fraction: float = 0.1  # held-out EPISODES (at least one when the file has two or more)
    split_seed: int = 0
    std_floor: float = 1e-2  # normalisation std floor (joints that never move)
    num_workers: int = 0  # DataLoader workers (0 = load in the training process; see docs)
    augment: bool = True
    shift_pixels: int = 4  # random shift (pad + crop) in pixels; 0 = off. No flips, ever.
    brightness: float = 0.1  # multiplicative brightness jitter, +-
    contrast: float = 0.1  # contrast jitter, +-
    # Serve every demo twice: as recorded and through the mirror map (images flipped/swapped,
    # qpos and actions through its joint map), so one policy drives either arm from raw
    # observations (docs/transfer.md "Beyond the seed"). No arm indicator input: the images and
    # the qpos signs already tell the arms apart. Needs a model.crop centred left-right.
    mirror_augment: bool = False
    mirror_map: str = ""  # mirror map YAML for mirror_augment; "" = the cell's

    def __post_init__(self):
        self.cameras = tuple(str(c) for c in self.cameras)
        _check(self.max_cameras >= 0, "data.max_cameras must be >= 0")
        _check(0.0 <= self.val_fraction < 1.0, f"data.val_fraction must be in [0, 1): {self.val_fraction}")
        _check(self.std_floor > 0.0, "data.std_floor must be > 0")
        _check(self.num_workers >= 0, "data.num_workers must be >= 0")
        _check(self.shift_pixels >= 0, "data.shift_pixels must be >= 0")
        _check(0.0 <= self.brightness < 1.0 and 0.0 <= self.contrast < 1.0,
               "data.brightness/contrast must be in [0, 1)")


@dataclass
class TrainConfig:
    """Optimisation (steps, batch, AdamW, LR schedule, clipping, EMA), logging/validation/checkpoint
    intervals, device, precision, seed, output directory and the fine-tuning checkpoint (init_from)."""

    out_dir: str = "runs/act"
    steps: int = 2000
    batch_size: int = 32
    lr: float = 2e-4
    lr_backbone: float = 2e-4  # ACT uses 1e-5 for a PRETRAINED trunk; from scratch it must learn
    weight_decay: float = 1e-4
    grad_clip: float = 10.0  # max grad norm; 0 = off
    schedule: str = "cosine"
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1  # cosine floor, as a fraction of lr
    log_every: int = 10
    eval_every: int = 250  # validation loss every N steps (and at the end); 0 = only at the end
    eval_samples: int = 256  # fixed, evenly spaced held-out samples per validation
    ckpt_every: int = 250  # <out>/checkpoints/last.pt every N steps (and at the end)
    stop_at: int = 0  # stop after this step as if killed (checkpoint written); 0 = run to `steps`
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: str = "auto"  # bf16 autocast: auto = on for CUDA with bf16 and CPUs with avx512_bf16/amx
    threads: int = 0  # torch intra-op threads per process; 0 = cores / processes
    # glibc malloc keeps freed memory, so a step does not page-fault its activations in again
    # (training.host_memory; ~10 % of a step at LeRobot's default sizes); the process keeps its peak
    keep_freed_memory: bool = True
    # exponential moving average of the weights, used for validation, policy.pt and deployment;
    # 0 = off. The decay ramps up as min(ema_decay, (1 + t) / (10 + t)) so early steps count less.
    ema_decay: float = 0.0
    # A checkpoint whose weights (and model config) start this run, e.g. few-shot fine-tuning of
    # an arm-0 policy on a few arm-1 demos; normalisation stats come from this run's data.
    # "" = from scratch. --resume takes precedence (the run's own last.pt).
    init_from: str = ""

    def __post_init__(self):
        _check(self.steps >= 1, "train.steps must be >= 1")
        _check(self.batch_size >= 1, "train.batch_size must be >= 1")
        _check(self.lr > 0 and self.lr_backbone >= 0, "train.lr must be > 0, train.lr_backbone >= 0")
        _check(self.weight_decay >= 0, "train.weight_decay must be >= 0")
        _check(self.grad_clip >= 0, "train.grad_clip must be >= 0")
        _check(self.schedule in SCHEDULES, f"train.schedule must be one of {SCHEDULES}")
        _check(self.warmup_steps >= 0, "train.warmup_steps must be >= 0")
        _check(0.0 <= self.min_lr_ratio <= 1.0, "train.min_lr_ratio must be in [0, 1]")
        _check(self.log_every >= 1, "train.log_every must be >= 1")
        _check(self.eval_every >= 0 and self.ckpt_every >= 0, "train.eval_every/ckpt_every must be >= 0")
        _check(self.eval_samples >= 1, "train.eval_samples must be >= 1")
        _check(self.stop_at >= 0, "train.stop_at must be >= 0")
        _check(self.amp in AMP_MODES, f"train.amp must be one of {AMP_MODES}")
        _check(self.threads >= 0, "train.threads must be >= 0")
        _check(0.0 <= self.ema_decay < 1.0, f"train.ema_decay must be in [0, 1), got {self.ema_decay}")


@dataclass
class Config:
    """A full training configuration: preset name plus the `model`, `data` and `train` sections."""

    preset: str = "cpu"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self):
        crop = self.model.crop
        # a mirrored frame shows the other arm's side: a crop must see both sides alike
        _check(not self.data.mirror_augment or crop is None or abs(crop[1] + crop[3] / 2 - 0.5) < 1e-6,
               f"data.mirror_augment needs model.crop centred left-right (left + width/2 = 0.5, or "
               f"null), found {list(crop) if crop else crop}")

    def to_dict(self) -> dict:
        """A JSON-ready dict (tuples as lists), e.g. for config.json and checkpoints."""
        d = asdict(self)
        d["model"]["camera_names"] = list(self.model.camera_names)
        d["data"]["cameras"] = list(self.data.cameras)
        if self.model.image_size is not None:
            d["model"]["image_size"] = list(self.model.image_size)
        if self.model.crop is not None:
            d["model"]["crop"] = list(self.model.crop)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Config:
        """The inverse of to_dict; unknown fields raise ConfigError."""
        return cls(
            preset=d.get("preset", "custom"),
            model=_section_from_dict(ModelConfig, d.get("model", {})),
            data=_section_from_dict(DataConfig, d.get("data", {})),
            train=_section_from_dict(TrainConfig, d.get("train", {})),
        )


def _section_from_dict(cls, d: dict):
    known = {f.name for f in fields(cls)}
    unknown = set(d) - known
    _check(not unknown, f"unknown {cls.__name__} fields: {sorted(unknown)}")
    return cls(**d)


def _preset_paper() -> Config:
    return Config(
        preset="paper",
        model=ModelConfig(
            image_size=(224, 224), chunk_size=100, hidden_dim=512, n_heads=8, dim_feedforward=3200,
            n_encoder_layers=4, n_decoder_layers=7, dropout=0.1, use_vae=True, latent_dim=32,
            n_vae_encoder_layers=4, kl_weight=0.1,
        ),
        data=DataConfig(max_cameras=0),
        train=TrainConfig(
            steps=100_000, batch_size=32, lr=1e-4, lr_backbone=1e-5, weight_decay=1e-4,
            schedule="constant", warmup_steps=500, eval_every=2000, ckpt_every=2000, log_every=50,
        ),
    )


def _preset_cpu() -> Config:
    return Config(
        preset="cpu",
        model=ModelConfig(
            image_size=(96, 96), chunk_size=50, hidden_dim=256, n_heads=8, dim_feedforward=1024,
            n_encoder_layers=2, n_decoder_layers=1, dropout=0.1, use_vae=True, latent_dim=32,
            n_vae_encoder_layers=2, kl_weight=10.0,
        ),
        data=DataConfig(max_cameras=1),
        train=TrainConfig(
            steps=1200, batch_size=32, lr=2e-4, lr_backbone=2e-4, weight_decay=1e-4, schedule="cosine",
            warmup_steps=100, eval_every=200, eval_samples=256, ckpt_every=200, log_every=10,
        ),
    )


def _preset_tiny() -> Config:
    return Config(
        preset="tiny",
        model=ModelConfig(
            image_size=(32, 32), chunk_size=8, hidden_dim=32, n_heads=2, dim_feedforward=64,
            n_encoder_layers=1, n_decoder_layers=2, dropout=0.0, use_vae=True, latent_dim=8,
            n_vae_encoder_layers=1, kl_weight=1.0, backbone_layers=2,
        ),
        data=DataConfig(max_cameras=0, augment=False, num_workers=0),
        train=TrainConfig(
            steps=30, batch_size=8, lr=1e-3, lr_backbone=1e-3, warmup_steps=0, schedule="constant",
            eval_every=10, eval_samples=16, ckpt_every=10, log_every=5, threads=1,
        ),
    )


PRESETS = {"paper": _preset_paper, "cpu": _preset_cpu, "tiny": _preset_tiny}


def get_preset(name: str) -> Config:
    """A fresh Config for a named preset (see the module docstring); ConfigError for an unknown name."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset '{name}'; choose one of {sorted(PRESETS)}")
    return PRESETS[name]()


def _coerce(value, tp, where: str):
    """Coerce a YAML-parsed value to a dataclass field's annotated type."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: cannot use {value!r} as {tp}")
    if origin is tuple:
        if isinstance(value, str):
            value = [v for v in value.split(",") if v]
        _check(isinstance(value, (list, tuple)), f"{where}: expected a list, got {value!r}")
        elem = args[0] if args else str
        return tuple(_coerce(v, elem, where) for v in value)
    if tp is bool:
        _check(isinstance(value, bool), f"{where}: expected true/false, got {value!r}")
        return value
    if tp is int:
        _check(isinstance(value, int) and not isinstance(value, bool), f"{where}: expected an int: {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML reads "1e-4" (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        _check(isinstance(value, (int, float)) and not isinstance(value, bool),
               f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if isinstance(value, bool):  # YAML 1.1 reads off/on/no/yes as booleans: give them back
            return "on" if value else "off"
        return "" if value is None else str(value)
    return value


def apply_overrides(cfg: Config, overrides: list[str] | dict) -> Config:
    """Return a copy of `cfg` with `section.field=value` overrides applied and re-validated."""
    items = overrides.items() if isinstance(overrides, dict) else [_split_override(o) for o in overrides]
    sections = {"model": asdict(cfg.model), "data": asdict(cfg.data), "train": asdict(cfg.train)}
    hints = {
        "model": typing.get_type_hints(ModelConfig),
        "data": typing.get_type_hints(DataConfig),
        "train": typing.get_type_hints(TrainConfig),
    }
    for key, value in items:
        sec, _, name = key.partition(".")
        _check(sec in sections and name, f"override '{key}': use section.field, section in {list(sections)}")
        _check(name in sections[sec], f"override '{key}': no field '{name}' in {sec} "
                                      f"(fields: {', '.join(sorted(sections[sec]))})")
        sections[sec][name] = _coerce(parse_value(value, hints[sec][name]), hints[sec][name],
                                      f"override '{key}'")
    return Config(
        preset=cfg.preset,
        model=ModelConfig(**sections["model"]),
        data=DataConfig(**sections["data"]),
        train=TrainConfig(**sections["train"]),
    )


def parse_value(value, tp):
    """A command-line value as written: text for a string field (`train.amp=off` is "off", not
    YAML's false; quotes are stripped), YAML for the others (`128`, `1e-4`, `[96, 96]`, `null`).
    Values that are not strings (from a dict or a YAML file) pass through unchanged."""
    if not isinstance(value, str):
        return value
    if tp is str:
        v = value.strip()
        return v[1:-1] if len(v) >= 2 and v[0] == v[-1] and v[0] in "'\"" else v
    try:
        return yaml.safe_load(value) if value != "" else ""
    except yaml.YAMLError:
        return value


def _split_override(s: str) -> tuple[str, str]:
    key, sep, value = s.partition("=")
    _check(bool(sep), f"override '{s}': expected section.field=value")
    return key.strip(), value.strip()


def make_config(preset: str = "cpu", overrides: list[str] | dict | None = None) -> Config:
    """A preset with `section.field=value` overrides (strings parsed as YAML, or a dict) applied."""
    cfg = get_preset(preset)
    return apply_overrides(cfg, overrides) if overrides else cfg


def replace(cfg, **changes):
    """dataclasses.replace that re-runs validation."""
    return dataclasses.replace(cfg, **changes)
