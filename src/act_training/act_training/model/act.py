"""ACT: Action Chunking with Transformers (Zhao et al. 2023), as a plain nn.Module.

Tensor shapes, written once for the whole package:

    images          (B, N_cams, 3, H, W)  float in [0, 1]   (ImageNet-normalised inside)
    qpos            (B, state_dim)        normalised
    actions         (B, chunk, action_dim) normalised        (training targets)
    action_is_pad   (B, chunk)            bool, True = padded past the episode end
    -> actions_hat  (B, chunk, action_dim) normalised

Structure:
- a ResNet trunk per camera (shared or one per camera), its last feature map projected to
  `hidden_dim` tokens with 2D sine position embeddings;
- a transformer encoder over [latent, qpos, image tokens];
- a transformer decoder with `chunk_size` learned queries; the action head reads the output of
  the LAST decoder layer, so every layer counts. (The original ACT code stacks the intermediate
  outputs and keeps index 0, i.e. only the FIRST decoder layer's output reaches the head and
  layers 2..7 are dead weight; LeRobot sidesteps it with n_decoder_layers=1.)
- a CVAE encoder over [CLS, qpos, action chunk] (padded steps masked out) giving q(z | o, a) in
  training; z = 0 (the prior mean) at inference. `use_vae=False` drops it (z is always 0).
Loss: L1 over unpadded steps + kl_weight * KL(q(z|.) || N(0, I)).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn

from act_training.config import ModelConfig
from act_training.model.dropout import Dropout16

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# ----------------------------------------------------------------------------- backbone
def _group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups=max(1, channels // 16), num_channels=channels)


class Backbone(nn.Module):
    """ResNet trunk up to layer`n_layers`: (B, 3, H, W) -> (B, C_feat, H/s, W/s), s = 32 for all 4."""

    def __init__(self, name: str = "resnet18", norm: str = "group", weights_path: str = "",
                 n_layers: int = 4):
        super().__init__()
        norm_layer = {
            "group": _group_norm,
            "batch": nn.BatchNorm2d,
            "frozen_batch": torchvision.ops.misc.FrozenBatchNorm2d,
        }[norm]
        net = getattr(torchvision.models, name)(weights=None, norm_layer=norm_layer)
        if weights_path:
            p = Path(weights_path).expanduser()
            if not p.is_file():
                raise FileNotFoundError(f"backbone weights file not found: {p}")
            state = torch.load(p, map_location="cpu", weights_only=True)
            state = {k: v for k, v in state.items() if not k.startswith("fc.")}
            missing, unexpected = net.load_state_dict(state, strict=False)
            missing = [k for k in missing if not k.startswith("fc.")]
            if missing or unexpected:
                raise ValueError(
                    f"backbone weights {p} do not fit {name} with norm '{norm}' (use "
                    f"model.backbone_norm=frozen_batch for torchvision BN weights): missing {missing[:4]}, "
                    f"unexpected {unexpected[:4]}"
                )
        stages = [net.layer1, net.layer2, net.layer3, net.layer4][:n_layers]
        self.body = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, *stages)
        self.num_channels = stages[-1][-1].conv2.out_channels

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


class SinePositionEmbedding2d(nn.Module):
    """DETR's 2D sine embedding: feature map (B, C, h, w) -> (1, dim, h, w); half y, half x."""

    def __init__(self, dim: int, temperature: float = 10000.0):
        super().__init__()
        if dim % 4:
            raise ValueError(f"2D sine position embedding needs dim % 4 == 0, got {dim}")
        self.npf = dim // 2
        self.temperature = temperature

    def forward(self, feat: Tensor) -> Tensor:
        h, w = feat.shape[-2:]
        eps, scale = 1e-6, 2 * math.pi
        y = torch.arange(1, h + 1, dtype=torch.float32, device=feat.device)[:, None].expand(h, w)
        x = torch.arange(1, w + 1, dtype=torch.float32, device=feat.device)[None, :].expand(h, w)
        y = y / (h + eps) * scale
        x = x / (w + eps) * scale
        i = torch.arange(self.npf, dtype=torch.float32, device=feat.device)
        dim_t = self.temperature ** (2 * (i // 2) / self.npf)
        px, py = x[..., None] / dim_t, y[..., None] / dim_t  # (h, w, npf)
        px = torch.stack((px[..., 0::2].sin(), px[..., 1::2].cos()), dim=-1).flatten(2)
        py = torch.stack((py[..., 0::2].sin(), py[..., 1::2].cos()), dim=-1).flatten(2)
        return torch.cat((py, px), dim=-1).permute(2, 0, 1).unsqueeze(0)  # (1, dim, h, w)


def sine_table_1d(n: int, dim: int) -> Tensor:
    """Fixed 1D sinusoid table (n, dim) (for the CVAE encoder's token positions)."""
    pos = torch.arange(n, dtype=torch.float32)[:, None]
    i = torch.arange(dim, dtype=torch.float32)[None, :]
    angle = pos / torch.pow(10000.0, 2 * (i // 2) / dim)
    return torch.where(i.long() % 2 == 0, angle.sin(), angle.cos())


# ----------------------------------------------------------------------------- transformer
class EncoderLayer(nn.Module):
    """DETR-style layer: position embeddings added to queries and keys at every layer."""

    def __init__(self, d: int, heads: int, ff: int, dropout: float, pre_norm: bool):
        super().__init__()
        self.attn = nn.MultiheadAttention(d, heads, dropout=dropout, batch_first=True)
        self.ff = nn.Sequential(nn.Linear(d, ff), nn.ReLU(), Dropout16(dropout), nn.Linear(ff, d))
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.drop1, self.drop2 = Dropout16(dropout), Dropout16(dropout)
        self.pre_norm = pre_norm

    def forward(self, x: Tensor, pos: Tensor, key_padding_mask: Tensor | None = None,
                first_only: bool = False) -> Tensor:
        """x (B, L, d) -> (B, L, d); first_only: only token 0's output (B, 1, d), attending to all
        L tokens (the CVAE encoder's last layer: its CLS output is all that is read)."""
        h = self.norm1(x) if self.pre_norm else x
        qk = h + pos
        q = qk[:, :1] if first_only else qk
        if first_only:
            x = x[:, :1]
        h = self.attn(q, qk, h, key_padding_mask=key_padding_mask, need_weights=False)[0]
        x = x + self.drop1(h)
        if not self.pre_norm:
            x = self.norm1(x)
        h = self.norm2(x) if self.pre_norm else x
        x = x + self.drop2(self.ff(h))
        return x if self.pre_norm else self.norm2(x)


class DecoderLayer(nn.Module):
    """DETR-style decoder layer: self-attention over the queries, cross-attention to the encoder
    memory, feed-forward; positions added to queries and keys (post- or pre-norm)."""

    def __init__(self, d: int, heads: int, ff: int, dropout: float, pre_norm: bool):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d, heads, dropout=dropout, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(d, heads, dropout=dropout, batch_first=True)
        self.ff = nn.Sequential(nn.Linear(d, ff), nn.ReLU(), Dropout16(dropout), nn.Linear(ff, d))
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.drop1, self.drop2, self.drop3 = Dropout16(dropout), Dropout16(dropout), Dropout16(dropout)
        self.pre_norm = pre_norm

    def forward(self, x: Tensor, query_pos: Tensor, memory: Tensor, memory_pos: Tensor,
                x_is_zero: bool = False) -> Tensor:
        """x (B, chunk, d) queries, query_pos (1, chunk, d), memory (B, L, d) and memory_pos (1, L, d)
        -> (B, chunk, d). x_is_zero: x is all zeros (the first layer's input, see ACT.decode)."""
        if x_is_zero:
            x = x + self.drop1(self._self_attention_of_zeros(x.shape[0], query_pos))
        else:
            h = self.norm1(x) if self.pre_norm else x
            qk = h + query_pos
            x = x + self.drop1(self.self_attn(qk, qk, h, need_weights=False)[0])
        if not self.pre_norm:
            x = self.norm1(x)
        h = self.norm2(x) if self.pre_norm else x
        h = self.cross_attn(h + query_pos, memory + memory_pos, memory, need_weights=False)[0]
        x = x + self.drop2(h)
        if not self.pre_norm:
            x = self.norm2(x)
        h = self.norm3(x) if self.pre_norm else x
        x = x + self.drop3(self.ff(h))
        return x if self.pre_norm else self.norm3(x)

    def _self_attention_of_zeros(self, batch: int, query_pos: Tensor) -> Tensor:
        """self_attn's output for x = 0, (batch, chunk, d), without the work that x = 0 makes moot.

        Every token's input is the same vector h0 (0, or norm1(0) when pre-norm), so every value
        row is v0 = W_v h0 + b_v and the queries and keys (h0 + query_pos) are the same for every
        sample. So the attention weights A are computed once, not per sample. A head's output
        is then (sum_j A'_ij) v0, where A' is A after the attention dropout (1 without dropout).
        The output projection folds into one vector per head: u_h = W_o[:, h] v0[h]. This is the
        same function as self_attn(...) (and draws the same dropout mask), with no projection of
        B x chunk tokens: 4-11 % of a cpu-preset fp32 training step (docs/performance.md)."""
        mha = self.self_attn
        d, heads = mha.embed_dim, mha.num_heads
        dh, chunk = d // heads, query_pos.shape[1]
        h0 = query_pos.new_zeros(1, 1, d)
        if self.pre_norm:
            h0 = self.norm1(h0)
        w, b = mha.in_proj_weight, mha.in_proj_bias
        qk = h0 + query_pos                                                   # (1, chunk, d)
        q = F.linear(qk, w[:d], b[:d]).view(chunk, heads, dh).transpose(0, 1)  # (heads, chunk, dh)
        k = F.linear(qk, w[d:2 * d], b[d:2 * d]).view(chunk, heads, dh).transpose(0, 1)
        v0 = F.linear(h0[0, 0], w[2 * d:], b[2 * d:])                          # (d,)
        attn = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(dh), dim=-1)   # (heads, chunk, chunk)
        attn = F.dropout(attn.expand(batch, heads, chunk, chunk), mha.dropout, mha.training)
        u = (mha.out_proj.weight.view(d, heads, dh) * v0.view(1, heads, dh)).sum(-1).T  # (heads, d)
        return attn.sum(-1).transpose(1, 2) @ u + mha.out_proj.bias          # (batch, chunk, d)


class Encoder(nn.Module):
    """A stack of EncoderLayers (final LayerNorm when pre-norm)."""

    def __init__(self, n: int, d: int, heads: int, ff: int, dropout: float, pre_norm: bool):
        super().__init__()
        self.layers = nn.ModuleList(EncoderLayer(d, heads, ff, dropout, pre_norm) for _ in range(n))
        self.norm = nn.LayerNorm(d) if pre_norm else nn.Identity()

    def forward(self, x: Tensor, pos: Tensor, key_padding_mask: Tensor | None = None,
                first_only: bool = False) -> Tensor:
        """(B, L, d) -> (B, L, d), or (B, 1, d) with first_only: the last layer computes token 0
        only (same values, without the work for outputs nobody reads)."""
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x, pos, key_padding_mask, first_only=first_only and i == last)
        return self.norm(x)


class Decoder(nn.Module):
    """Every layer feeds the next and the head reads the last one (see module docstring)."""

    def __init__(self, n: int, d: int, heads: int, ff: int, dropout: float, pre_norm: bool):
        super().__init__()
        self.layers = nn.ModuleList(DecoderLayer(d, heads, ff, dropout, pre_norm) for _ in range(n))
        self.norm = nn.LayerNorm(d)

    def forward(self, x: Tensor, query_pos: Tensor, memory: Tensor, memory_pos: Tensor,
                x_is_zero: bool = False) -> Tensor:
        """x (B, chunk, d), query_pos (1, chunk, d), memory (B, L, d), memory_pos (1, L, d)
        -> (B, chunk, d), after the final LayerNorm. x_is_zero: x is all zeros (ACT's queries), so
        the first layer's self-attention takes DecoderLayer's shortcut."""
        for i, layer in enumerate(self.layers):
            x = layer(x, query_pos, memory, memory_pos, x_is_zero=x_is_zero and i == 0)
        return self.norm(x)


# ----------------------------------------------------------------------------- ACT
class ACT(nn.Module):
    """The ACT policy (see the module docstring): images and qpos (and, in training, the action
    chunk for the CVAE posterior) -> a normalised action chunk (B, chunk, action_dim)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if not cfg.is_complete():
            raise ValueError(
                "ModelConfig is missing camera_names / state_dim / action_dim / image_size "
                "(they are filled from the demo file by the trainer)"
            )
        self.cfg = cfg
        d = cfg.hidden_dim
        n_bb = 1 if cfg.shared_backbone else cfg.num_cameras
        self.backbones = nn.ModuleList(
            Backbone(cfg.backbone, cfg.backbone_norm, cfg.backbone_weights, cfg.backbone_layers)
            for _ in range(n_bb)
        )
        # channels_last (NHWC) trunk: oneDNN's convolutions run without layout reorders (5 % of a
        # cpu-preset training step here, docs/performance.md); state_dict values are unchanged
        self.backbones.to(memory_format=torch.channels_last)
        self.input_proj = nn.Conv2d(self.backbones[0].num_channels, d, kernel_size=1)
        self.pos_2d = SinePositionEmbedding2d(d)
        self.register_buffer("img_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("img_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        # encoder tokens [latent, qpos] have learned positions; image tokens sine positions
        self.qpos_proj = nn.Linear(cfg.state_dim, d)
        self.latent_proj = nn.Linear(cfg.latent_dim, d)
        self.token_pos = nn.Embedding(2, d)
        self.encoder = Encoder(cfg.n_encoder_layers, d, cfg.n_heads, cfg.dim_feedforward, cfg.dropout,
                               cfg.pre_norm)
        self.decoder = Decoder(cfg.n_decoder_layers, d, cfg.n_heads, cfg.dim_feedforward, cfg.dropout,
                               cfg.pre_norm)
        self.query_pos = nn.Embedding(cfg.chunk_size, d)
        self.action_head = nn.Linear(d, cfg.action_dim)
        if cfg.use_vae:
            self.vae_cls = nn.Embedding(1, d)
            self.vae_qpos_proj = nn.Linear(cfg.state_dim, d)
            self.vae_action_proj = nn.Linear(cfg.action_dim, d)
            self.vae_encoder = Encoder(cfg.n_vae_encoder_layers, d, cfg.n_heads, cfg.dim_feedforward,
                                       cfg.dropout, cfg.pre_norm)
            self.vae_out = nn.Linear(d, 2 * cfg.latent_dim)
            self.register_buffer("vae_pos", sine_table_1d(cfg.chunk_size + 2, d).unsqueeze(0),
                                 persistent=False)
        self._reset_parameters()

    def _reset_parameters(self):
        for name, p in self.named_parameters():
            if p.dim() > 1 and not name.startswith("backbones."):
                nn.init.xavier_uniform_(p)

    def backbone_parameters(self):
        """The ResNet trunks' parameters (their own learning rate, train.lr_backbone)."""
        return self.backbones.parameters()

    # -------------------------------------------------------------- pieces
    def encode_latent(self, qpos: Tensor, actions: Tensor, action_is_pad: Tensor | None):
        """CVAE encoder q(z | qpos, actions) -> (mu, logvar), each (B, latent_dim)."""
        B = qpos.shape[0]
        tokens = torch.cat(
            [self.vae_cls.weight.expand(B, 1, -1), self.vae_qpos_proj(qpos)[:, None],
             self.vae_action_proj(actions)], dim=1,
        )  # (B, 2 + chunk, d)
        mask = None
        if action_is_pad is not None:
            mask = torch.cat([torch.zeros(B, 2, dtype=torch.bool, device=qpos.device), action_is_pad], 1)
        h = self.vae_encoder(tokens, self.vae_pos.to(tokens.dtype), mask, first_only=True)[:, 0]
        mu, logvar = self.vae_out(h).chunk(2, dim=-1)
        return mu, logvar

    def image_tokens(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """images (B, N, 3, H, W) -> tokens (B, N*h*w, d) and their positions (1, N*h*w, d).

        The training path: a shared trunk runs once over all B*N frames. Camera i's tokens are
        `camera_tokens(images[:, i], i)` (what split inference computes, and caches, per frame)."""
        B, N = images.shape[:2]
        if N != self.cfg.num_cameras:
            raise ValueError(f"expected {self.cfg.num_cameras} cameras, got images {tuple(images.shape)}")
        x = (images.flatten(0, 1) - self.img_mean) / self.img_std  # (B*N, 3, H, W)
        if len(self.backbones) == 1:
            feats = self.backbones[0](x)
            feats = feats.view(B, N, *feats.shape[1:])
        else:
            x = x.view(B, N, *x.shape[1:])
            feats = torch.stack([bb(x[:, i]) for i, bb in enumerate(self.backbones)], dim=1)
        feats = self.input_proj(feats.flatten(0, 1))  # (B*N, d, h, w)
        d, h, w = feats.shape[1:]
        tokens = feats.view(B, N, d, h * w).permute(0, 1, 3, 2).reshape(B, N * h * w, d)
        return tokens, self.image_positions(feats, N)

    def camera_tokens(self, image: Tensor, camera: int) -> Tensor:
        """One camera's frames (B, 3, H, W) in [0, 1] -> its tokens (B, h*w, d): the trunk and the
        projection, no position (the image half of the network; `decode` is the other half)."""
        bb = self.backbones[0 if len(self.backbones) == 1 else camera]
        feats = self.input_proj(bb((image - self.img_mean) / self.img_std))  # (B, d, h, w)
        return feats.flatten(2).transpose(1, 2)

    def image_positions(self, feats: Tensor, n_cameras: int) -> Tensor:
        """Sine positions of N cameras' tokens, from a feature map (.., d, h, w) -> (1, N*h*w, d)."""
        pos = self.pos_2d(feats).to(feats.dtype)  # (1, d, h, w)
        return pos.flatten(2).transpose(1, 2).repeat(1, n_cameras, 1)

    def decode(self, img_tokens: Tensor, img_pos: Tensor, qpos: Tensor, z: Tensor | None = None) -> Tensor:
        """Image tokens (B, N*h*w, d) + positions (1, N*h*w, d), qpos (B, state_dim) and the latent
        z (B, latent_dim; None = 0, the prior mean) -> actions_hat (B, chunk, A): the encoder over
        [latent, qpos, image tokens], the decoder's queries and the action head."""
        B = qpos.shape[0]
        if z is None:
            z = qpos.new_zeros(B, self.cfg.latent_dim)
        tokens = torch.cat([self.latent_proj(z)[:, None], self.qpos_proj(qpos)[:, None], img_tokens], dim=1)
        pos = torch.cat([self.token_pos.weight[None].to(img_pos.dtype), img_pos], dim=1)
        memory = self.encoder(tokens, pos)
        query_pos = self.query_pos.weight[None]
        tgt = memory.new_zeros(B, self.cfg.chunk_size, self.cfg.hidden_dim)
        h = self.decoder(tgt, query_pos.to(memory.dtype), memory, pos, x_is_zero=True)
        return self.action_head(h)

    # -------------------------------------------------------------- forward
    def forward(self, images: Tensor, qpos: Tensor, actions: Tensor | None = None,
                action_is_pad: Tensor | None = None):
        """-> (actions_hat (B, chunk, A), mu, logvar); mu/logvar are None without a posterior."""
        mu = logvar = z = None
        if self.cfg.use_vae and actions is not None:
            mu, logvar = self.encode_latent(qpos, actions, action_is_pad)
            z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        img, img_pos = self.image_tokens(images)
        return self.decode(img, img_pos, qpos, z), mu, logvar


def act_loss(actions_hat: Tensor, actions: Tensor, action_is_pad: Tensor | None, mu: Tensor | None,
             logvar: Tensor | None, kl_weight: float) -> dict[str, Tensor]:
    """L1 averaged over UNPADDED (step, dim) entries + kl_weight * KL (summed over z, batch mean)."""
    err = (actions_hat.float() - actions.float()).abs()  # (B, C, A)
    if action_is_pad is not None:
        valid = (~action_is_pad).unsqueeze(-1).to(err.dtype)
        l1 = (err * valid).sum() / (valid.sum() * err.shape[-1]).clamp_min(1.0)
    else:
        l1 = err.mean()
    if mu is not None:
        mu, logvar = mu.float(), logvar.float()
        kl = (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp())).sum(-1).mean()
    else:
        kl = torch.zeros((), device=err.device)
    return {"loss": l1 + kl_weight * kl, "l1": l1, "kl": kl}


def count_parameters(model: nn.Module) -> int:
    """Total number of parameters (trainable or not)."""
    return sum(p.numel() for p in model.parameters())


__all__ = ["ACT", "act_loss", "Backbone", "SinePositionEmbedding2d", "count_parameters"]
