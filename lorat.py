"""
LoRAT, the tracker of "Tracking Meets LoRA: Faster Training, Larger Model, Stronger Performance"
(Lin et al., ECCV 2024), in one file, in the paper's order:

1. LoRA: a frozen linear layer plus a trainable low-rank update that merges away for inference.
2. The ViT backbone: DINOv2's, parameter for parameter, fed one sequence [template; search].
3. The decoupled positional embedding: one shared, frozen spatial grid + learned token types.
4. The MLP anchor-free head (and the conv head it replaces, for the paper's comparison).
5. Labels and losses: IoU-aware BCE + GIoU on the cells the target covers.
6. Weight loading (DINOv2, our checkpoints, the official LoRAT releases) and the model card.

Parameter names equal the checkpoint keys: DINOv2's for the frozen weights (`blocks.0.attn.qkv.weight`),
the official LoRAT release's for what is trained (`blocks.0.attn.qkv.q.lora.A`, `token_type_embed`,
`head.cls_mlp.layers.0.weight`), so loading is a key-by-key copy.

    python lorat.py --export-backbone runs/<run>/export.pt backbone.pth   # a tracker's ViT as a DINOv2 file
"""
import argparse
import contextlib
import math
import os
import sys
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

import common

# -----------------------------------------------------------------------------
# Model sizes and resolutions

class Size(NamedTuple):
    """A model size: the ViT's shape and the defaults that go with it (names are ModelConfig's fields)."""
    dim: int
    depth: int
    num_heads: int
    ffn: str
    drop_path: float
    lora_rank: int  # the paper's 64; 16 for T, whose layers are only 128 wide


# B/L/g are DINOv2's ViT-B/L/g-14 (LoRAT's sizes), S is DINOv2's ViT-S/14, T is this project's own: small
# enough to train from scratch on a laptop CPU.
SIZES = {
    'T': Size(dim=128, depth=4, num_heads=4, ffn='mlp', drop_path=0.0, lora_rank=16),
    'S': Size(dim=384, depth=12, num_heads=6, ffn='mlp', drop_path=0.0, lora_rank=64),
    'B': Size(dim=768, depth=12, num_heads=12, ffn='mlp', drop_path=0.0, lora_rank=64),
    'L': Size(dim=1024, depth=24, num_heads=16, ffn='mlp', drop_path=0.1, lora_rank=64),
    'g': Size(dim=1536, depth=40, num_heads=24, ffn='swiglu', drop_path=0.4, lora_rank=64),
}
# res -> (template px, search px, search area factor). 224 and 378 are the paper's; 112, 140 and 168 the CPU's.
RESOLUTIONS = {112: (56, 112, 4.0), 140: (70, 140, 4.0), 168: (84, 168, 4.0), 224: (112, 224, 4.0), 378: (196, 378, 5.0)}
DEFAULT_RES = {'T': 140, 'S': 224, 'B': 224, 'L': 224, 'g': 224}  # when none is given; T's 10x10 tokens: RESULTS.md
DINOV2_URL = 'https://dl.fbaipublicfiles.com/dinov2/dinov2_vit{s}14/dinov2_vit{s}14_pretrain.pth'
# size T has no DINOv2: its backbone (pre-trained on the synthetic world, in DINOv2's layout) ships here
T_BACKBONE = Path(__file__).resolve().parent / 'weights' / 'lorat-T-backbone.pth'
T_BACKBONE_REBUILD = ("restore it with `git checkout -- weights/`, or rebuild it: `python train.py --scratch --res 112 "
                      "--epochs 28 --samples-per-epoch 16384 --batch-size 32 --warmup-epochs 1 --augment on "
                      "--val-samples 512 --name pretrain-T && python lorat.py --export-backbone runs/pretrain-T/export.pt "
                      "weights/lorat-T-backbone.pth`")
SHIPPED_T_BACKBONE = T_BACKBONE  # the file whose hash is checked on load (T_BACKBONE may point elsewhere in tests)
# its sha256, as README.md states it ('The pretrained T backbone'): update both when the file is re-made
T_BACKBONE_SHA256 = '56ebd59a16861409b715caaeffd7a5f6343ccbb78b5e4ab902b62f3c11ac50c6'


@dataclass
class ModelConfig:
    """Everything that builds a model; the defaults are size T's at 140 px (make_config fills in a size's)."""
    size: str = 'T'
    res: int = 140
    dim: int = 128
    depth: int = 4
    num_heads: int = 4
    ffn: str = 'mlp'             # 'mlp' (GELU, 4x) or 'swiglu' (size g)
    drop_path: float = 0.0       # stochastic depth at the last block, linear in depth
    patch_size: int = 14
    template_size: int = 70      # template crop, px
    search_size: int = 140       # search crop, px
    template_factor: float = 2.0  # SiamFC crop: side = sqrt((w + p)(h + p)), p = (factor - 1)(w + h) / 2 (data.py)
    search_factor: float = 4.0
    head: str = 'mlp'            # 'mlp' (LoRAT) or 'conv' (OSTrack-style, the paper's comparison)
    pos_emb: str = 'decoupled'   # 'decoupled' (LoRAT) or 'separate' (ablation 1)
    type_emb: bool = True        # token type embedding (ablation 3 without it)
    fg: bool = True              # foreground indicator inside the template (ablation 4 without it)
    lora_rank: int = 16          # the size's (SIZES); 0: no LoRA (from scratch, full fine-tuning, merged export)
    lora_alpha: float = 64.0     # the update is scaled by lora_alpha / lora_rank
    lora_init: str = 'bert'      # 'bert': A, B ~ trunc-normal(0.02) (official); 'lora': kaiming A, zero B
    lora_dropout: float = 0.0

    @property
    def template_grid(self):
        return self.template_size // self.patch_size

    @property
    def search_grid(self):
        return self.search_size // self.patch_size

    @property
    def ffn_hidden(self):
        if self.ffn == 'swiglu':  # DINOv2's SwiGLU: 2/3 of 4x, rounded up to a multiple of 8
            return (int(self.dim * 4 * 2 / 3) + 7) // 8 * 8
        return 4 * self.dim


def make_config(size='T', res=None, **overrides):
    """The ModelConfig of a size at a resolution; unknown names fail with the list of valid ones."""
    if size not in SIZES:
        raise ValueError(f"unknown model size {size!r}: choose one of {', '.join(SIZES)}")
    res = DEFAULT_RES[size] if res is None else int(res)
    if res not in RESOLUTIONS:
        raise ValueError(f"unknown resolution {res}: choose one of {', '.join(map(str, RESOLUTIONS))}")
    template_size, search_size, search_factor = RESOLUTIONS[res]
    cfg = ModelConfig(size=size, res=res, **SIZES[size]._asdict(), template_size=template_size, search_size=search_size,
                      search_factor=search_factor)
    unknown = set(overrides) - {f.name for f in fields(ModelConfig)}
    if unknown:
        raise ValueError(f"unknown model option(s) {sorted(unknown)}")
    cfg = replace(cfg, **overrides)
    for name, value, allowed in [('head', cfg.head, ('mlp', 'conv')), ('pos_emb', cfg.pos_emb, ('decoupled', 'separate')),
                                 ('lora_init', cfg.lora_init, ('bert', 'lora'))]:
        if value not in allowed:
            raise ValueError(f"unknown {name} {value!r}: choose one of {', '.join(allowed)}")
    return cfg


def resolution(text):
    """--res: one of RESOLUTIONS. A command-line type like common's, kept here beside the table it reads (as is --size)."""
    try:
        return make_config('T', int(text)).res
    except ValueError:
        raise argparse.ArgumentTypeError(f"unknown resolution {text}: choose one of {', '.join(map(str, RESOLUTIONS))}") from None


def size_name(text):
    if text not in SIZES:
        raise argparse.ArgumentTypeError(f"unknown model size {text!r}: choose one of {', '.join(SIZES)}")
    return text

# -----------------------------------------------------------------------------
# 1. LoRA


def compute_dtype(x):
    """The dtype the matmuls of x run in: autocast's where it is on for x's device, else x's own."""
    kind = x.device.type
    return torch.get_autocast_dtype(kind) if kind in ('cpu', 'cuda') and torch.is_autocast_enabled(kind) else x.dtype


class LoRA(nn.Module):
    """The low-rank update of LoRA (Hu et al. 2021): delta(x) = dropout(x) A^T B^T * alpha / r. LoRAT's init
    ('bert') draws both A and B from a trunc-normal(0.02), so the update is not zero at step 0; the classic
    init ('lora') is kaiming-uniform A and zero B (the paper's ablation)."""

    def __init__(self, in_features, out_features, r, alpha, dropout=0.0, init='bert'):
        super().__init__()
        self.A = nn.Parameter(torch.empty(r, in_features))
        self.B = nn.Parameter(torch.empty(out_features, r))
        self.scale = alpha / r
        self.dropout = nn.Dropout(dropout)
        if init == 'bert':
            nn.init.trunc_normal_(self.A, std=0.02)
            nn.init.trunc_normal_(self.B, std=0.02)
        else:
            nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))
            nn.init.zeros_(self.B)

    def down(self, x):
        """x A^T, (M, in) -> (M, r). Never B @ A: two thin matmuls cost r * (in + out) per token, not in * out."""
        return F.linear(self.dropout(x) if self.dropout.p else x, self.A)

    def forward(self, x):
        """The update on its own, the formula as written; Linear and FusedQKV fuse it into the frozen layer."""
        return F.linear(self.down(x), self.B) * self.scale  # (..., out)

    def delta_weight(self):
        return (self.B.float() @ self.A.float()) * self.scale  # (out, in), fp32 for an exact merge


class Linear(nn.Module):
    """A linear layer whose frozen `weight`/`bias` keep DINOv2's names, with an optional LoRA. `merge()` folds
    the update into the weight (W <- W + B A alpha/r, in fp32) and drops the adapter: LoRA costs nothing at
    inference."""

    def __init__(self, in_features, out_features, bias=True):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
        nn.init.trunc_normal_(self.weight, std=0.02)

    def add_lora(self, r, alpha, dropout=0.0, init='bert'):
        out_features, in_features = self.weight.shape
        self.lora = LoRA(in_features, out_features, r, alpha, dropout, init)

    def down(self, x):
        return self.lora.down(x)  # (M, r)

    def up_(self, y, h):
        """y += h B^T * alpha / r, in place: one addmm_, the scale folded into it."""
        y.addmm_(h, self.lora.B.to(h.dtype).T, alpha=self.lora.scale)

    def delta_weight(self):
        return self.lora.delta_weight()

    @property
    def has_lora(self):
        return 'lora' in self._modules

    def forward(self, x):
        if not self.has_lora:
            return F.linear(x, self.weight, self.bias)
        # W x + b + dropout(x) A^T B^T alpha / r, costed as LoRA should be: under autocast x is cast once
        # (not once per matmul), and the update is added into the frozen layer's output in place
        shape = x.shape
        x = x.reshape(-1, shape[-1]).to(compute_dtype(x))  # (M, in)
        y = F.linear(x, self.weight, self.bias)  # (M, out)
        self.up_(y, self.down(x))
        return y.view(*shape[:-1], y.shape[-1])

    @torch.no_grad()
    def merge(self):
        if self.has_lora:
            self.weight.copy_((self.weight.float() + self.delta_weight()).to(self.weight.dtype))
            self.remove_lora()

    def remove_lora(self):
        del self.lora


class FusedQKV(Linear):
    """DINOv2's fused `attn.qkv` projection with one LoRA for each of q, k and v, as LoRAT splits them. The
    frozen weight stays fused (one matmul, DINOv2's checkpoint loads unchanged); the adapters are named
    `q.lora`, `k.lora`, `v.lora` like the official release's split qkv."""

    def add_lora(self, r, alpha, dropout=0.0, init='bert'):
        dim = self.weight.shape[1]
        for name in ('q', 'k', 'v'):
            slot = nn.Module()  # a named holder, so the keys read `qkv.q.lora.A`
            slot.lora = LoRA(dim, dim, r, alpha, dropout, init)
            setattr(self, name, slot)

    @property
    def has_lora(self):
        return 'q' in self._modules

    def down(self, x):
        """One matmul for the three adapters: x [A_q; A_k; A_v]^T, (M, C) -> (M, 3r); dropout shares one mask."""
        A = torch.cat([self.q.lora.A, self.k.lora.A, self.v.lora.A])  # (3r, C)
        return F.linear(self.q.lora.dropout(x) if self.q.lora.dropout.p else x, A)

    def up_(self, y, h):
        """q, k, v += h_q B_q^T, h_k B_k^T, h_v B_v^T * alpha / r: one batched matmul into y, in place."""
        M, r = h.shape[0], self.q.lora.B.shape[1]
        B = torch.stack([self.q.lora.B, self.k.lora.B, self.v.lora.B]).to(h.dtype)  # (3, C, r)
        y.view(M, 3, -1).transpose(0, 1).baddbmm_(h.view(M, 3, r).transpose(0, 1), B.transpose(1, 2),
                                                  alpha=self.q.lora.scale)  # (3, M, C) += (3, M, r) @ (3, r, C)

    def delta_weight(self):
        return torch.cat([self.q.lora.delta_weight(), self.k.lora.delta_weight(), self.v.lora.delta_weight()])

    def remove_lora(self):
        del self.q, self.k, self.v


def add_lora(model, r=64, alpha=64.0, dropout=0.0, init='bert'):
    """Put LoRA on every linear layer inside the ViT blocks: q, k, v, attn proj, mlp fc1/fc2 (w12/w3)."""
    for block in model.blocks:
        for layer in block.modules():
            if isinstance(layer, Linear):
                layer.add_lora(r, alpha, dropout, init)


def mark_trainable(model, mode='lora'):
    """LoRAT trains only LoRA, the token type table and the head; 'full' trains every parameter. With separate
    positional embeddings (ablation 1) the embeddings are trained too, as in OSTrack."""
    for name, p in model.named_parameters():
        if mode == 'full':
            p.requires_grad = True
        else:
            p.requires_grad = ('.lora.' in name or name.startswith(('token_type_embed', 'head.'))
                               or (model.cfg.pos_emb == 'separate' and 'pos_embed' in name))


def trainable_state_dict(model):
    """Only the trained tensors (LoRA, type table, head), with the buffers of trained modules (the conv head's
    BatchNorm statistics), which training changes too."""
    keep = {name for name, p in model.named_parameters() if p.requires_grad}
    trained = {name.rsplit('.', 1)[0] for name in keep}
    keep |= {name for name, _ in model.named_buffers() if name.rsplit('.', 1)[0] in trained}
    return {k: v for k, v in model.state_dict().items() if k in keep}

# -----------------------------------------------------------------------------
# 2. The ViT backbone (DINOv2's layout)


def drop_path(x, p, training):
    """Stochastic depth: drop a whole residual branch per sample, rescale the kept ones."""
    if p == 0.0 or not training:
        return x
    keep = x.new_empty(x.shape[0], *([1] * (x.ndim - 1))).bernoulli_(1 - p)
    return x * keep / (1 - p)


class PatchEmbed(nn.Module):
    """Cut the image into 14x14 patches and project each to a token."""

    def __init__(self, dim, patch_size=14):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, patch_size, patch_size)

    def forward(self, img):
        return self.proj(img).flatten(2).transpose(1, 2)  # (B, H*W, C)


class Attention(nn.Module):
    def __init__(self, dim, num_heads):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = FusedQKV(dim, 3 * dim)
        self.proj = Linear(dim, dim)

    def forward(self, x):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # (B, nh, N, hs)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(B, N, C))


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = Linear(dim, hidden)
        self.fc2 = Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class SwiGLU(nn.Module):
    """The FFN of DINOv2 ViT-g: one fused w12 -> silu(x1) * x2 -> w3."""

    def __init__(self, dim, hidden):
        super().__init__()
        self.w12 = Linear(dim, 2 * hidden)
        self.w3 = Linear(hidden, dim)

    def forward(self, x):
        x1, x2 = self.w12(x).chunk(2, dim=-1)
        return self.w3(F.silu(x1) * x2)


class LayerScale(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))  # DINOv2's trained values replace these

    def forward(self, x):
        return x * self.gamma


class Block(nn.Module):
    def __init__(self, dim, num_heads, ffn, ffn_hidden, drop_path=0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.ls1 = LayerScale(dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = SwiGLU(dim, ffn_hidden) if ffn == 'swiglu' else Mlp(dim, ffn_hidden)
        self.ls2 = LayerScale(dim)
        self.drop_path = drop_path

    def forward(self, x):
        x = x + drop_path(self.ls1(self.attn(self.norm1(x))), self.drop_path, self.training)
        x = x + drop_path(self.ls2(self.mlp(self.norm2(x))), self.drop_path, self.training)
        return x

# -----------------------------------------------------------------------------
# 3. The decoupled positional embedding


def sincos_pos_embed(grid, dim):
    """A 2-D sine-cosine position grid (1, grid*grid, C): the stand-in for DINOv2's grid when training
    from scratch, so that neighbouring cells start out similar."""
    quarter = dim // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float32) / quarter)
    ys, xs = torch.meshgrid(torch.arange(grid, dtype=torch.float32), torch.arange(grid, dtype=torch.float32), indexing='ij')
    ox, oy = xs.reshape(-1, 1) * omega, ys.reshape(-1, 1) * omega  # (N, C/4)
    emb = torch.cat([ox.sin(), ox.cos(), oy.sin(), oy.cos()], dim=1)
    return F.pad(emb, (0, dim - emb.shape[1]))[None]  # (1, N, C)


def resize_pos_embed(pos_embed, grid):
    """Resize a square position grid (1, n*n, C) to (1, grid*grid, C), bicubic, once at load time."""
    n = math.isqrt(pos_embed.shape[1])
    if n == grid:
        return pos_embed
    C = pos_embed.shape[-1]
    x = pos_embed.float().reshape(1, n, n, C).permute(0, 3, 1, 2)  # (1, C, n, n)
    x = F.interpolate(x, size=(grid, grid), mode='bicubic', align_corners=False)
    return x.permute(0, 2, 3, 1).reshape(1, grid * grid, C).to(pos_embed.dtype)


def box_cells(box, grid_h, grid_w):
    """Which cells of a grid a box covers, even partly: (B, 4) xyxy in cell units -> (B, H, W) bool.
    x2, y2 get + (1 - 1e-4) before the floor, so a box edge exactly on a cell border does not claim
    the next cell, and a box thinner than a cell still claims the cell it lies in."""
    x1, y1 = box[:, 0].floor(), box[:, 1].floor()
    x2, y2 = (box[:, 2] + 1 - 1e-4).floor(), (box[:, 3] + 1 - 1e-4).floor()  # end-exclusive
    cols = torch.arange(grid_w, device=box.device, dtype=box.dtype)
    rows = torch.arange(grid_h, device=box.device, dtype=box.dtype)
    in_x = (cols >= x1[:, None]) & (cols < x2[:, None])  # (B, W)
    in_y = (rows >= y1[:, None]) & (rows < y2[:, None])  # (B, H)
    return in_y[:, :, None] & in_x[:, None, :]


def template_fg_mask(box_xyxy, grid, stride=14):
    """The foreground indicator of LoRAT: 1 for template cells the template box covers, else 0.
    box_xyxy (B, 4) in template-crop pixels -> (B, grid, grid) int64, the row index into the type table."""
    return box_cells(torch.as_tensor(box_xyxy, dtype=torch.float64) / stride, grid, grid).long()


class LoRAT(nn.Module):
    """One-stream tracker: [template tokens; search tokens] through one ViT, a head on the search tokens.

    Decoupled positional embedding (the paper's first design): template and search share DINOv2's
    spatial grid (the search gets the whole grid, the template its top-left corner), so the pre-trained
    structure is untouched; what a token *is* comes from a learned token type: template background (0),
    template foreground (1) or search (2). The crops keep the paper's (and SiamFC's) names: `z` is the
    template, the target as the first frame shows it, and `x` the search region of the current frame."""

    def __init__(self, cfg, backbone_device=None):
        """backbone_device='meta': the backbone's tensors are placeholders (no memory, no init time) that
        load_dinov2 replaces by the file's own; what is trained is made and initialized as usual."""
        super().__init__()
        self.cfg = cfg
        C, gz, gx = cfg.dim, cfg.template_grid, cfg.search_grid
        backbone = lambda: torch.device(backbone_device) if backbone_device else contextlib.nullcontext()
        with backbone():
            self.patch_embed = PatchEmbed(C, cfg.patch_size)
            self.pos_embed = nn.Parameter(sincos_pos_embed(gx, C))  # (1, gx*gx, C); DINOv2's when loaded
            if cfg.pos_emb == 'separate':  # ablation 1: the template has an embedding of its own
                self.template_pos_embed = nn.Parameter(sincos_pos_embed(gz, C))
        if cfg.type_emb:
            self.token_type_embed = nn.Parameter(torch.empty(3, C))
            nn.init.trunc_normal_(self.token_type_embed, std=0.02)
        with backbone():
            dpr = [cfg.drop_path * i / max(cfg.depth - 1, 1) for i in range(cfg.depth)]
            self.blocks = nn.ModuleList(Block(C, cfg.num_heads, cfg.ffn, cfg.ffn_hidden, p) for p in dpr)
            self.norm = nn.LayerNorm(C, eps=1e-6)
        self.head = ConvHead(C) if cfg.head == 'conv' else MLPHead(C)
        if cfg.lora_rank > 0:
            add_lora(self, cfg.lora_rank, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_init)
        mark_trainable(self, 'lora' if cfg.lora_rank > 0 else 'full')
        self.grad_checkpoint = False  # train.py --grad-checkpoint: memory for compute (not a model option)

    def template_positions(self):
        if self.cfg.pos_emb == 'separate':
            return self.template_pos_embed
        gz, gx, C = self.cfg.template_grid, self.cfg.search_grid, self.cfg.dim
        return self.pos_embed.view(1, gx, gx, C)[:, :gz, :gz].reshape(1, gz * gz, C)  # top-left slice

    def embed(self, z, x, z_mask):
        """Patch tokens + shared position + token type, concatenated: (B, Nz + Nx, C)."""
        z = self.patch_embed(z) + self.template_positions()  # (B, Nz, C)
        x = self.patch_embed(x) + self.pos_embed  # (B, Nx, C)
        if self.cfg.type_emb:
            z_type = z_mask.flatten(1) if self.cfg.fg else torch.zeros_like(z_mask.flatten(1))  # (B, Nz)
            z = z + self.token_type_embed[z_type]
            x = x + self.token_type_embed[2]
        return torch.cat([z, x], dim=1)

    def forward(self, z, x, z_mask):
        """Template z (B,3,Tz,Tz) and search region x (B,3,Sx,Sx), standardized; z_mask (B,gz,gz), 1 on the
        template cells the target covers -> per search cell: score logits (B,H,W), boxes (B,H,W,4) normalized xyxy."""
        t = self.embed(z, x, z_mask)
        checkpointing = self.grad_checkpoint and self.training and torch.is_grad_enabled()
        for block in self.blocks:
            # activation checkpointing keeps only each block's input and recomputes the block in the
            # backward pass; the RNG state is replayed, so drop path drops the same samples both times
            t = checkpoint(block, t, use_reentrant=False) if checkpointing else block(t)  # (B, N, C)
        t = self.norm(t)
        gx = self.cfg.search_grid
        return self.head(t[:, -gx * gx:], gx, gx)

    def merge(self):
        """Fold every LoRA into its frozen weight (exact in fp32); the model becomes a plain ViT."""
        for m in self.modules():
            if isinstance(m, Linear):
                m.merge()
        self.cfg = replace(self.cfg, lora_rank=0)
        return self

# -----------------------------------------------------------------------------
# 4. Heads


def decode_ltrb(ltrb):
    """Anchor-free boxes: each cell predicts distances (l, t, r, b) from its center.
    ltrb (B, H, W, 4) in [0, 1] of the search crop -> boxes (B, H, W, 4) normalized xyxy."""
    B, H, W, _ = ltrb.shape
    cx = (torch.arange(W, device=ltrb.device, dtype=ltrb.dtype) + 0.5) / W
    cy = (torch.arange(H, device=ltrb.device, dtype=ltrb.dtype) + 0.5) / H
    cx, cy = cx.view(1, 1, W).expand(B, H, W), cy.view(1, H, 1).expand(B, H, W)
    l, t, r, b = ltrb.unbind(-1)
    return torch.stack([cx - l, cy - t, cx + r, cy + b], dim=-1)


class MLP(nn.Module):
    """Linear-GELU-Linear-GELU-Linear, applied to every token on its own."""

    def __init__(self, dim, out):
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, out)])
        for layer in self.layers:
            nn.init.trunc_normal_(layer.weight, std=0.02)
            nn.init.zeros_(layer.bias)

    def forward(self, x):
        x = F.gelu(self.layers[0](x))
        x = F.gelu(self.layers[1](x))
        return self.layers[2](x)


class MLPHead(nn.Module):
    """LoRAT's second design: an MLP anchor-free head, with no convolution's image-specific bias.
    Per search token: one score logit and four sigmoid distances."""

    def __init__(self, dim):
        super().__init__()
        self.cls_mlp = MLP(dim, 1)
        self.reg_mlp = MLP(dim, 4)

    def forward(self, x, H, W):
        B = x.shape[0]  # x (B, H*W, C)
        score = self.cls_mlp(x).float().view(B, H, W)
        ltrb = self.reg_mlp(x).float().sigmoid().view(B, H, W, 4)
        return score, decode_ltrb(ltrb)


def conv_tower(dim, out):
    """OSTrack's head tower: 3x3 conv-BN-ReLU, C -> 256 -> 128 -> 64 -> 32, then a 1x1 conv to `out`."""
    layers, channels = [], [dim, 256, 128, 64, 32]
    for cin, cout in zip(channels[:-1], channels[1:]):
        layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers, nn.Conv2d(32, out, 1))


class ConvHead(nn.Module):
    """The convolutional head LoRAT replaces: same outputs as MLPHead, from the tokens laid out as a map."""

    def __init__(self, dim):
        super().__init__()
        self.cls_tower = conv_tower(dim, 1)
        self.reg_tower = conv_tower(dim, 4)

    def forward(self, x, H, W):
        fmap = x.transpose(1, 2).unflatten(2, (H, W))  # (B, C, H, W)
        score = self.cls_tower(fmap).float()[:, 0]  # (B, H, W)
        ltrb = self.reg_tower(fmap).float().sigmoid().permute(0, 2, 3, 1)  # (B, H, W, 4)
        return score, decode_ltrb(ltrb)

# -----------------------------------------------------------------------------
# 5. Boxes, labels and losses


def box_xywh_to_xyxy(b):
    x, y, w, h = b.unbind(-1)
    return torch.stack([x, y, x + w, y + h], dim=-1)


def box_area(b):
    return (b[..., 2] - b[..., 0]).clamp(min=0) * (b[..., 3] - b[..., 1]).clamp(min=0)


def box_iou(a, b, eps=1e-7):
    """IoU of xyxy boxes (broadcasting); empty or inverted boxes give 0, never NaN."""
    lt, rb = torch.maximum(a[..., :2], b[..., :2]), torch.minimum(a[..., 2:], b[..., 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    return inter / (box_area(a) + box_area(b) - inter + eps)


def box_giou(a, b, eps=1e-7):
    """Generalized IoU (Rezatofighi et al. 2019): IoU - (hull - union) / hull; in [-1, 1]."""
    lt, rb = torch.maximum(a[..., :2], b[..., :2]), torch.minimum(a[..., 2:], b[..., 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    union = box_area(a) + box_area(b) - inter
    hull_lt, hull_rb = torch.minimum(a[..., :2], b[..., :2]), torch.maximum(a[..., 2:], b[..., 2:])
    hull = (hull_rb - hull_lt).clamp(min=0).prod(-1)
    return inter / (union + eps) - (hull - union) / (hull + eps)


def positive_cells(gt_xyxy, grid):
    """The positives of LoRAT's label assignment: every search cell the ground-truth box overlaps.
    gt_xyxy (B, 4) normalized to the search crop -> (B, grid, grid) bool."""
    return box_cells(gt_xyxy.float().clamp(0, 1) * grid, grid, grid)


def lorat_loss(score, boxes, gt_xyxy, num_pos_fn=None):
    """IoU-aware classification + GIoU regression, both normalized by the number of positives.
    score (B,H,W) logits, boxes (B,H,W,4) and gt_xyxy (B,4) normalized. The classification target is
    the (detached) IoU of a positive cell's box with the ground truth, 0 elsewhere. `num_pos_fn` maps
    the local positive count to the normalizer (under DDP: the count averaged over ranks)."""
    B, H, W = score.shape
    pos = positive_cells(gt_xyxy, H)  # (B, H, W)
    gt = gt_xyxy.float()[:, None, None].expand(B, H, W, 4)
    iou = box_iou(boxes, gt)  # (B, H, W)
    num_pos = pos.sum().float()
    num_pos = (num_pos_fn(num_pos) if num_pos_fn else num_pos).clamp(min=1)
    target = torch.where(pos, iou.detach(), torch.zeros_like(iou))
    loss_cls = F.binary_cross_entropy_with_logits(score.float(), target, reduction='sum') / num_pos
    # a masked sum, not boxes[pos]: a shape that depends on the data would make the host wait for the GPU
    loss_reg = torch.where(pos, 1 - box_giou(boxes, gt), 0.0).sum() / num_pos
    best = score.flatten(1).argmax(1)  # the box a tracker would report
    best_iou = iou.flatten(1).gather(1, best[:, None]).mean()
    return loss_cls + loss_reg, {'cls': loss_cls.detach(), 'reg': loss_reg.detach(), 'iou': best_iou.detach()}

# -----------------------------------------------------------------------------
# 6. Building and loading


def build_model(size='T', res=None, backbone_device=None, **overrides):
    """The one entry point: `build_model('L', 378)`, `build_model('B', head='conv', lora_rank=0)`.
    backbone_device='meta' for a model whose backbone load_dinov2 fills next (LoRAT.__init__)."""
    return LoRAT(make_config(size, res, **overrides), backbone_device)


def build_model_from_config(config):
    """Rebuild the model a checkpoint's `config` dict describes."""
    return LoRAT(ModelConfig(**config))


def read_state_dict(path_or_url):
    """A state dict from a local .pth/.pt/.safetensors file or a URL (downloaded once by torch.hub)."""
    path = str(path_or_url)
    if path.startswith(('http://', 'https://')):
        try:
            return torch.hub.load_state_dict_from_url(path, map_location='cpu', weights_only=True)
        except Exception as e:  # no network, a proxy, a 404: all end here
            raise OSError(f"cannot download {path} ({type(e).__name__}: {e}); "
                          f"download it yourself and pass the local file") from None
    if os.path.isdir(path):
        raise IsADirectoryError(f"weights file {path} is a folder: give the file in it (e.g. {os.path.join(path, 'export.pt')})")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"weights file {path} does not exist: check the path")
    if os.path.realpath(path) == os.path.realpath(SHIPPED_T_BACKBONE):
        check_shipped_hash(path)
    try:
        with open(path, 'rb') as f:
            head = f.read(9)
        # safetensors: an 8-byte header length, then the JSON header; anything else goes to torch.load
        # (the zip format of torch >= 1.6, and the legacy pickle stream before it)
        if path.endswith('.safetensors') or head[8:9] == b'{':
            from safetensors.torch import load_file
            return load_file(path)
        # the zip format is memory-mapped: tensors are read from the file as they are used, and a model built
        # on the meta device takes them without a copy (a ViT-g is 4.5 GB, once per rank)
        sd = torch.load(path, map_location='cpu', weights_only=True, mmap=head[:2] == b'PK')
    except Exception as e:
        raise ValueError(f"cannot read weights file {path} ({type(e).__name__}): it is damaged, or not "
                         f"a PyTorch or safetensors checkpoint") from None
    return sd


# What a weights file is, told from its keys (identify_weights), and what it is for
WEIGHT_KINDS = {
    'export': "a tracker export (train.py's export.pt: LoRA merged)",
    'checkpoint': "a train.py checkpoint (ckpt.pt)",
    'release': "an official LoRAT release (LoRA, type table and head only)",
    'backbone': "a backbone in DINOv2's layout (no head)",
    'other': "not a LoRAT or DINOv2 weights file",
}


def identify_weights(path_or_url):
    """The one place a weights file is told apart -> (kind of WEIGHT_KINDS, contents, detail: what an 'other'
    holds). A checkpoint of a newer version of this code is refused here."""
    sd = read_state_dict(path_or_url)
    if not isinstance(sd, dict):
        return 'other', sd, f"it holds a {type(sd).__name__}, not a dict of tensors"
    if 'config' in sd or 'model' in sd:
        config, model = sd.get('config'), sd.get('model')
        if not isinstance(config, dict) or not isinstance(model, dict):
            return 'other', sd, "it has a 'config' or 'model' entry but not both as dicts"
        unknown = sorted(set(config) - {f.name for f in fields(ModelConfig)})
        if unknown:
            raise ValueError(f"{path_or_url} was made by a newer version of this code (model options "
                             f"{', '.join(unknown[:4])} are unknown here): update lorat, or use weights made by this version")
        return ('checkpoint' if 'optimizer' in sd else 'export'), sd, ''
    if not all(isinstance(v, torch.Tensor) for v in sd.values()):
        return 'other', sd, "a dict that is not all tensors"
    keys = set(sd)
    backbone = 'patch_embed.proj.weight' in keys
    lora = any('.lora.' in k for k in keys)
    head = 'token_type_embed' in keys or any(k.startswith('head.') for k in keys)
    if backbone and not lora and not head:
        return 'backbone', sd, ''
    if not backbone and lora and 'token_type_embed' in keys:
        return 'release', sd, ''
    if backbone and head:
        return 'other', sd, "a bare LoRAT state dict (no 'config'): save trackers the way train.py's export does"
    return 'other', sd, f"{len(keys)} tensors, e.g. {sorted(keys)[:2]}"


def wrong_weights(path, kind, detail, flag, role):
    """One line: `flag path` is of `kind`, which is not what `role` ('tracker' or 'backbone') needs, and what to do."""
    what = WEIGHT_KINDS[kind] + (f" ({detail})" if detail else '')
    if role == 'tracker':
        fix = {'backbone': f"give it as --backbone (of a LoRA-only ckpt.pt or an official release), "
                           f"or train a tracker on it: python train.py --weights {path}",
               'other': "give a train.py export.pt or ckpt.pt, or an official LoRAT release"}[kind]
    else:
        fix = {'export': f"to train on its backbone, write it out first: python lorat.py --export-backbone {path} "
                         f"backbone.pth, and pass backbone.pth" if flag == '--weights' else "give it to track.py as --weights",
               'checkpoint': f"continue its run with python train.py --resume {os.path.dirname(os.path.abspath(path))}, "
                             f"or give it to track.py as --weights",
               'release': "give it as --weights (with its DINOv2 backbone as --backbone)",
               'other': "give a DINOv2-layout backbone (dinov2_vit{s,b,l,g}14_pretrain.pth, weights/lorat-T-backbone.pth)"}[kind]
    if kind == 'other':
        return f"{flag} {path} is {what}: {fix}"
    return f"{flag} {path} is {what}, not {'tracker weights' if role == 'tracker' else 'a backbone'}: {fix}"


def read_backbone(path_or_url, flag='--backbone'):
    """A backbone state dict in DINOv2's layout; another kind of file is one line (wrong_weights)."""
    kind, sd, detail = identify_weights(path_or_url)
    if kind != 'backbone':
        raise ValueError(wrong_weights(path_or_url, kind, detail, flag, 'backbone'))
    return sd


def size_of_state_dict(sd):
    """Guess the size (B, L, ...) of a DINOv2 or LoRAT state dict from its width."""
    for key in ('patch_embed.proj.weight', 'token_type_embed', 'norm.weight'):
        if key in sd:
            dim = sd[key].shape[0] if key != 'token_type_embed' else sd[key].shape[1]
            return next((s for s, v in SIZES.items() if v.dim == dim), f'of width {dim}')
    return 'unknown'


def load_dinov2(model, path_or_url, flag='--backbone'):
    """Load the official DINOv2 weights (`dinov2_vit{s,b,l,g}14_pretrain.pth`) into the backbone. Every
    backbone tensor must be consumed; the cls and mask tokens are dropped (LoRAT does not use them); the
    37x37 position grid (without its cls entry) is resized once to the search grid. `flag`: the option
    that named the file (train.py's --weights, track.py's --backbone), for the errors."""
    sd = dict(read_backbone(path_or_url, flag))
    cfg = model.cfg
    ckpt_size = size_of_state_dict(sd)
    if ckpt_size != cfg.size or sum(k.endswith('ls1.gamma') for k in sd) != cfg.depth:
        fix = f"pass --size {ckpt_size}" if flag == '--weights' else f"give the ViT-{cfg.size} one"
        raise ValueError(f"{path_or_url} holds a ViT-{ckpt_size} backbone but the model is size {cfg.size}: "
                         f"use the DINOv2 file of size {cfg.size} or {fix}")
    if 'register_tokens' in sd:
        raise ValueError(f"{path_or_url} is a DINOv2 'with registers' model; LoRAT uses the plain one "
                         f"(dinov2_vit{cfg.size.lower()}14_pretrain.pth)")
    sd.pop('cls_token', None)
    sd.pop('mask_token', None)
    grid = sd.pop('pos_embed')[:, 1:]  # (1, 37*37, C): drop the cls position
    sd['pos_embed'] = resize_pos_embed(grid, cfg.search_grid)
    if cfg.pos_emb == 'separate':
        sd['template_pos_embed'] = resize_pos_embed(grid, cfg.template_grid)
    not_backbone = ('.lora.', 'token_type_embed', 'head.')
    expected = {k for k in model.state_dict() if not any(s in k for s in not_backbone)}
    missing, unexpected = sorted(expected - set(sd)), sorted(set(sd) - expected)
    if missing or unexpected:
        raise ValueError(f"{path_or_url} is not a DINOv2 ViT-{cfg.size}/14 checkpoint: "
                         f"missing {missing[:5]}, unexpected {unexpected[:5]}")
    copy_tensors(model, sd, str(path_or_url))


def copy_tensors(model, sd, source):
    """Copy named tensors into the model, asserting every name and shape."""
    params = model.state_dict()
    for k, v in sd.items():
        if k not in params:
            raise ValueError(f"{source} has tensor {k!r} that this model ({model.cfg.size}-{model.cfg.res}) "
                             f"does not have: it was made for another model variant")
        if params[k].shape != v.shape:
            raise ValueError(f"{source}: {k} has shape {tuple(v.shape)}, the model expects "
                             f"{tuple(params[k].shape)}: it was made for another size or resolution")
    if any(params[k].is_meta for k in sd):  # built with backbone_device='meta': take the tensors themselves
        model.load_state_dict(sd, strict=False, assign=True)
        return
    with torch.no_grad():
        for k, v in sd.items():
            params[k].copy_(v)


def load_official_lorat(path, backbone=None, res=None, device='cpu', sd=None):
    """A released LoRAT checkpoint (safetensors: LoRA, type table and head only) + its DINOv2 backbone.
    The size comes from the tensors' width; the resolution is not in the file (the position grid is
    re-derived from DINOv2's), so it comes from `res` or a '378' in the file name. Every LoRA, type
    table and head tensor of the model must be in the file (one left random would track silently worse)."""
    sd = dict(read_state_dict(path) if sd is None else sd)
    alpha = float(sd.pop('lora_alpha', torch.tensor(64)))
    if bool(sd.pop('use_rslora', torch.tensor(False))):
        raise ValueError(f"{path} uses rsLoRA scaling, which this loader does not implement")
    size = size_of_state_dict(sd)
    if size not in SIZES:
        raise ValueError(f"{path} is not a LoRAT checkpoint (no token_type_embed of a known width)")
    res = res or (378 if '378' in os.path.basename(str(path)) else 224)
    ranks = [v.shape[0] for k, v in sd.items() if k.endswith('.lora.A') and v.dim() == 2]
    if not ranks:
        raise ValueError(f"{path} is not a LoRAT release: it holds no LoRA tensor (*.lora.A)")
    model = build_model(size, res, lora_rank=ranks[0], lora_alpha=alpha)
    trained = {k for k in model.state_dict() if '.lora.' in k or k == 'token_type_embed' or k.startswith('head.')}
    missing = sorted(trained - set(sd))
    if missing:
        raise ValueError(f"{path} lacks {len(missing)} of the release's {len(trained)} tensors (e.g. {missing[0]}): "
                         f"the file is incomplete; download it again")
    load_dinov2(model, backbone or DINOV2_URL.format(s=size.lower()))
    copy_tensors(model, sd, str(path))
    return model.to(device).merge().eval()


def load_model(path, backbone=None, device='cpu', res=None, flag='--weights'):
    """Any tracker weights, ready for inference (LoRA merged, eval mode): a train.py checkpoint, a merged
    export, or an official LoRAT release (needs its DINOv2 backbone). Another kind of file is a ValueError
    that says what it is and where it goes."""
    kind, sd, detail = identify_weights(path)
    if kind not in ('export', 'checkpoint', 'release'):
        raise ValueError(wrong_weights(path, kind, detail, flag, 'tracker'))
    if kind == 'release':  # the official release is a bare tensor dict
        return load_official_lorat(path, backbone, res, device, sd)
    try:
        model = build_model_from_config(sd['config'])
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: its model config cannot be built ({e}): the file is damaged or of another version") from None
    if 'patch_embed.proj.weight' not in sd['model']:  # LoRA checkpoint: the frozen backbone is elsewhere
        weights, expected = str(backbone or sd.get('weights') or ''), sd.get('weights_sha256')
        if not weights:
            raise ValueError(f"{path} holds only LoRA weights and names no DINOv2 backbone: pass --backbone")
        local = not weights.startswith(('http://', 'https://'))
        if local and not os.path.isfile(weights):
            raise FileNotFoundError(f"{path} holds only LoRA weights and its backbone {weights} is not there: "
                                    f"pass --backbone FILE" + (f" (the file with sha256 {expected[:16]}...)" if expected else ''))
        found = common.cached_sha256(weights) if local and expected else expected
        if found != expected:
            raise ValueError(f"{weights} is not the backbone {path} was trained on (sha256 "
                             f"{found[:16]}... vs {expected[:16]}...): pass that one with --backbone")
        load_dinov2(model, weights)
    missing = set(trainable_state_dict(model)) - set(sd['model'])
    if missing:
        raise ValueError(f"{path} lacks {len(missing)} trained tensors (e.g. {sorted(missing)[0]}): "
                         f"the checkpoint is incomplete")
    copy_tensors(model, sd['model'], str(path))
    return model.to(device).merge().eval()


def check_shipped_hash(path):
    """The shipped T backbone is the file README.md's sha256 names (T_BACKBONE_SHA256); else one line."""
    found = common.cached_sha256(path)
    if found != T_BACKBONE_SHA256:
        raise ValueError(f"{path} is not the shipped T backbone (sha256 {found[:16]}..., expected "
                         f"{T_BACKBONE_SHA256[:16]}...): it was changed or damaged; restore it with "
                         f"`git checkout -- weights/lorat-T-backbone.pth`")


def check_t_backbone(path):
    """The shipped T backbone is there, readable and of size T; else one line: which file, how to rebuild."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"the shipped T backbone {path} is missing: {T_BACKBONE_REBUILD}")
    try:
        sd = torch.load(path, map_location='cpu', weights_only=True)
        size, depth = size_of_state_dict(sd), sum(k.endswith('ls1.gamma') for k in sd)
    except Exception as e:
        raise ValueError(f"the shipped T backbone {path} is damaged ({type(e).__name__}): {T_BACKBONE_REBUILD}") from None
    if size != 'T' or depth != SIZES['T'].depth:
        raise ValueError(f"{path} holds a ViT-{size} backbone of depth {depth}, not the shipped size T: {T_BACKBONE_REBUILD}")
    if os.path.realpath(path) == os.path.realpath(SHIPPED_T_BACKBONE):
        check_shipped_hash(path)


def default_backbone(size, download=True):
    """The backbone file of a size when --weights is not given: the shipped one for T; for S/B/L/g the
    public DINOv2 file in torch hub's cache, downloaded there once (to a temporary name, then moved: never
    half a file). download=False: only its path (another process is downloading it)."""
    if size == 'T':
        check_t_backbone(T_BACKBONE)
        return str(T_BACKBONE)
    if size not in SIZES:
        raise ValueError(f"unknown model size {size!r}: choose one of {', '.join(SIZES)}")
    url = DINOV2_URL.format(s=size.lower())
    path = Path(torch.hub.get_dir()) / 'checkpoints' / os.path.basename(url)
    if download and not path.is_file():
        print(f"downloading the DINOv2 ViT-{size}/14 backbone {url} to {path}", file=sys.stderr, flush=True)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(url, str(path), progress=True)
        except Exception as e:  # no network, a proxy, a 404, a full disk: all end here
            raise OSError(f"cannot download {url} ({type(e).__name__}): download it yourself "
                          f"and pass --weights FILE") from None
    return str(path)


def export_backbone(weights, out):
    """A trained tracker's backbone as a DINOv2 checkpoint, what `load_dinov2` reads: pos_embed with a cls
    position in front, zero cls and mask tokens (LoRAT never uses them), no head and no token type table
    (a tracker that adapts it learns those fresh, as LoRAT does on DINOv2)."""
    if os.path.exists(out) and os.path.exists(weights) and os.path.samefile(out, weights):
        raise ValueError(f"--export-backbone {weights} {out}: OUT is the tracker itself, which it would replace: "
                         f"give another OUT file")
    model = load_model(weights, flag='--export-backbone WEIGHTS')  # merged: any LoRA is folded into the weights first
    sd = {k: v for k, v in model.state_dict().items()
          if not k.startswith(('head.', 'token_type_embed', 'template_pos_embed'))}
    C = model.cfg.dim
    sd['pos_embed'] = torch.cat([torch.zeros(1, 1, C), sd['pos_embed']], dim=1)  # (1, 1 + n*n, C)
    sd['cls_token'], sd['mask_token'] = torch.zeros(1, 1, C), torch.zeros(1, C)
    sd = {k: v.float().contiguous() for k, v in sorted(sd.items())}
    common.write_atomic(out, lambda tmp: torch.save(sd, tmp))
    return out, common.file_sha256(out)

# -----------------------------------------------------------------------------
# The model card: params and MACs (the paper's inference-efficiency table; `python evaluate.py efficiency`)


def count_macs(model, batch=1):
    """MACs of one forward (template + search), counted on the meta device: no memory, no time.
    The math SDPA backend is forced: fused attention kernels have no FLOP formula and would count 0."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as counter, sdpa_kernel(SDPBackend.MATH), torch.no_grad():
        model(*example_inputs(model.cfg, batch, 'meta'))
    return counter.get_total_flops() / 2


def example_inputs(cfg, batch=1, device='cpu', dtype=torch.float32):
    """Inputs of a forward, for timing, counting and comparing (not tracking): z (B, 3, Tz, Tz) and x (B, 3, Sx, Sx)
    standard normal, like standardized crops; z_mask (B, gz, gz) foreground where a centered target covers it."""
    z = torch.randn(batch, 3, cfg.template_size, cfg.template_size)
    x = torch.randn(batch, 3, cfg.search_size, cfg.search_size)
    g = cfg.template_grid
    z_mask = torch.zeros(batch, g, g, dtype=torch.long)
    z_mask[:, g // 4:g - g // 4, g // 4:g - g // 4] = 1
    return z.to(device, dtype), x.to(device, dtype), z_mask.to(device)


def model_card(size, res=None, **overrides):
    """Params at training (total, LoRA, head, trainable), after merging, and MACs of the merged model."""
    with torch.device('meta'):
        model = build_model(size, res, **overrides)
    count = lambda pred: sum(p.numel() for n, p in model.named_parameters() if pred(n, p))
    card = {
        'size': size, 'res': model.cfg.res,
        'params_total_M': count(lambda n, p: True) / 1e6,
        'params_lora_M': count(lambda n, p: '.lora.' in n) / 1e6,
        'params_head_M': count(lambda n, p: n.startswith('head.')) / 1e6,
        'params_trainable_M': count(lambda n, p: p.requires_grad) / 1e6,
    }
    model.merge()
    card['params_merged_M'] = count(lambda n, p: True) / 1e6
    card['macs_G'] = count_macs(model.eval()) / 1e9
    return card


# the paper's inference-efficiency table: (size, res) -> (#params M, MACs G, fps on an 80 GB GPU)
PAPER = {('B', 224): (99, 30, 209), ('B', 378): (99, 97, 151), ('L', 224): (336, 103, 119),
         ('L', 378): (336, 325, 63), ('g', 224): (1216, 378, 50), ('g', 378): (1216, 1161, 20)}


def main():
    parser = common.Parser(description="Write a tracker's backbone as a DINOv2-layout checkpoint and print its sha256.")
    parser.add_argument('--export-backbone', nargs=2, metavar=('WEIGHTS', 'OUT'), required=True,
                        help="the tracker (export.pt or ckpt.pt) and the file to write (how "
                             "weights/lorat-T-backbone.pth is made)")
    args = parser.parse_args()
    with common.main_errors():
        out, sha = export_backbone(*args.export_backbone)
    print(f"backbone: {out}\nsha256: {sha}")


if __name__ == '__main__':
    main()
