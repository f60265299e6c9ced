"""
Train LoRAT, nanoGPT-style: one flat script, from one CPU process to many GPUs with torchrun.

    python train.py                                  # LoRA on the shipped T backbone, synthetic world (CPU)
    python train.py --scratch                        # size T from scratch on the synthetic world (CPU)
    torchrun --nproc_per_node=8 train.py --size L --res 378 --data-root /data   # the paper's L-378:
        # LoRA on DINOv2 ViT-L/14 (downloaded once to torch hub's cache) on lasot,got10k,trackingnet,coco
    python train.py ... --resume runs/<name>         # the same command + --resume: continues exactly
    python train.py --benchmark --size B --res 224   # LoRA vs full fine-tuning: step time and peak memory
    python train.py --benchmark --size L --grad-checkpoint   # + activation checkpointing, the g-378 estimate

What is trained (the paper's first idea): LoRA on every linear layer of the frozen pretrained blocks, the
token type table and the head; with --full-finetune everything (the paper's baseline); with --scratch every
parameter, from random init. A run ends with runs/<name>/export.pt: LoRA merged into the weights, what
track.py and evaluate.py load; ckpt.pt holds only what was trained and names its backbone by path and sha256.

Exact resume rests on three pure functions: the learning rate of the step, the training sample of a
global index (data.TrainingPairs), and the global indices of a step. So a checkpoint needs only the
step, the optimizer, the fp16 loss scaler and the RNG states (drop path). A resumed run ends with the
weights, bit for bit, of one that never stopped; on CUDA only with --deterministic (cuBLAS and cuDNN
pick their kernels per run).
"""
import argparse
import contextlib
import datetime
import hashlib
import json
import math
import os
import resource
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

import common
import data
import lorat

# -----------------------------------------------------------------------------
# Flags. --help shows every default; a default that depends on the case comes from one of these tables.

# The recipe of each case: LoRAT's, the paper's, adapts a pretrained DINOv2 on GPUs; size T's adapts the shipped
# T backbone on 2 CPU cores. With --scratch nothing is pretrained: size T learns from scratch on the synthetic world,
# and must do so in 10 minutes on 2 CPU cores, hence a 10x higher lr, small batches and ~40x fewer samples.
RECIPES = {
    'lorat': dict(lr=1e-4, batch_size=128, epochs=170, samples_per_epoch=131072, warmup_epochs=2,
                  weight_decay=0.1, val_samples=1024, augment='on'),
    'lorat-cpu': dict(lr=1e-3, batch_size=16, epochs=4, samples_per_epoch=8192, warmup_epochs=0.5,
                      weight_decay=0.05, val_samples=256, augment='on'),
    'scratch': dict(lr=1e-3, batch_size=16, epochs=10, samples_per_epoch=8192, warmup_epochs=0.5,
                    weight_decay=0.05, val_samples=256, augment='off'),
}
RECIPE_NAMES = {'lorat': "LoRAT's", 'lorat-cpu': "size T", 'scratch': "--scratch"}  # as --help names them
PAPER_MIX = 'lasot,got10k,trackingnet,coco'  # LoRAT's training sets
DEFAULT_DATA = {'T': 'synthetic,synthetic_stills'}  # --data of a size: T's synthetic world, else PAPER_MIX
# the synthetic world's clips and stills, 3:1, as LoRAT draws 1 pair in 4 from COCO's still images
DEFAULT_DATA_WEIGHTS = {'synthetic,synthetic_stills': '3,1'}
GOT10K_EPOCHS = 100  # the GOT-10k protocol: GOT-10k train only, 100 epochs
WARMUP_LR, MIN_LR = 1e-7, 1e-6
# changing these between a run and its --resume would change the data or the schedule
SAME_ON_RESUME = ('data', 'data_weights', 'weights', 'full_finetune', 'seed', 'batch_size', 'lr', 'epochs',
                  'samples_per_epoch', 'warmup_epochs', 'weight_decay', 'clip', 'layer_decay', 'augment')


def by_recipe(key):
    """--help's words for a default the recipe sets: "default: LoRAT's 0.0001, size T 0.001, --scratch 0.001"."""
    show = lambda v: f"{v:g}" if isinstance(v, float) else str(v)
    return "default: " + ", ".join(f"{RECIPE_NAMES[c]} {show(r[key])}" for c, r in RECIPES.items() if key in r)


def data_weights(text):
    """--data-weights: checked (finite, >= 0, one > 0), kept as given (a resume compares it as text)."""
    common.sampling_weights(text)
    return text


def data_names(text):
    """--data: every name a dataset this code reads (a typo is named as such, not as a missing data root)."""
    known = list(data.DATASETS) + list(data.ALIASES)
    names = [n.strip() for n in str(text).split(',')]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown dataset {unknown[0]!r}: choose from {', '.join(known)}")
    return text


def parser():
    """train.py's flags. A default that depends on the case is None here, said in --help, and set by with_recipe."""
    p = common.Parser(description="Train LoRAT (see the module docstring for examples). Defaults that depend on "
                                  "the case: LoRAT's recipe (sizes S to g), size T's, or --scratch's.")
    model_flags(p.add_argument_group("model: size, backbone, the paper's ablations"))
    data_flags(p.add_argument_group("data"))
    optimization_flags(p.add_argument_group("optimization: the recipe's"))
    machinery_flags(p.add_argument_group("machinery"))
    return p


def model_flags(g):
    """The model: size, resolution, backbone, and the paper's ablations."""
    g.add_argument('--size', type=lorat.size_name, default='T', help="T, S, B, L or g (default %(default)s)")
    g.add_argument('--res', type=lorat.resolution, default=None, help="112, 140, 168 (CPU sizes), 224 or 378 (default: 140 for T, else 224)")
    g.add_argument('--weights', default=None, help="backbone file in DINOv2's layout (default: the public dinov2_vit{s,b,l,g}14_pretrain.pth "
                                                   "from torch hub's cache, downloaded there if absent; size T: weights/lorat-T-backbone.pth)")
    g.add_argument('--scratch', action='store_true', help="no pretrained backbone: train every parameter from random init")
    g.add_argument('--full-finetune', action='store_true', help="train every backbone weight instead of LoRA")
    g.add_argument('--head', default='mlp', help="mlp (LoRAT) or conv (OSTrack's) (default %(default)s)")
    g.add_argument('--pos-emb', default='decoupled', help="decoupled (LoRAT) or separate (default %(default)s)")
    g.add_argument('--no-type-emb', action='store_true', help="no token type embedding")
    g.add_argument('--no-fg', action='store_true', help="no template foreground indicator")
    g.add_argument('--lora-init', default='bert', help="bert (LoRAT: trunc-normal A and B) or lora (zero B) (default %(default)s)")
    g.add_argument('--lora-rank', type=common.positive_int, default=None, help="LoRA rank (default: the size's, "
                   + ", ".join(f"{s} {v.lora_rank}" for s, v in lorat.SIZES.items()) + ")")
    g.add_argument('--grad-checkpoint', action='store_true', help="activation checkpointing per block: keep only "
                   "each block's input, recompute the block in the backward pass: memory for compute (--benchmark "
                   "--grad-checkpoint prints both)")


def data_flags(g):
    """The training data: datasets, their root and weights, augmentation, validation, seed."""
    g.add_argument('--data', type=data_names, default=None, help="comma-separated: lasot,got10k,trackingnet,coco,synthetic,custom "
                                                f"(default: {DEFAULT_DATA['T']} for size T, {PAPER_MIX} for the others)")
    g.add_argument('--data-root', default=None, help="the folder holding LaSOT/, GOT-10k/, TrackingNet/, COCO/ (default: $LORAT_DATA)")
    g.add_argument('--partial', action='store_true', help="use the sequences present of a dataset only partly there "
                                                         "(default: refuse it; it says how many of how many)")
    g.add_argument('--data-weights', type=data_weights, default=None, help="sampling weight per dataset, comma-separated (default: "
                   + "; ".join(f"{w} for {d}" for d, w in DEFAULT_DATA_WEIGHTS.items()) + "; else equal)")
    g.add_argument('--augment', default=None, choices=['on', 'off'],
                   help=f"flips + color augmentation, as LoRAT trains ({by_recipe('augment')}: from scratch on the synthetic "
                        "world color is what tells the target from its look-alikes)")
    g.add_argument('--val-samples', type=common.nonneg_int, default=None, help=f"held-out pairs validated each epoch "
                                                                                f"({by_recipe('val_samples')})")
    g.add_argument('--seed', type=common.seed_int, default=0, help="the seed of the training pairs, the initial weights and drop path "
                                                              "(default %(default)s)")


def optimization_flags(g):
    """The optimization: the recipe's schedule, batch, learning rate, decay and clipping."""
    g.add_argument('--epochs', type=common.positive_int, default=None,
                   help=f"{by_recipe('epochs')}; {GOT10K_EPOCHS} with LoRAT's on --data got10k (the GOT-10k protocol)")
    g.add_argument('--samples-per-epoch', type=common.positive_int, default=None, help=by_recipe('samples_per_epoch'))
    g.add_argument('--batch-size', type=common.positive_int, default=None, help="global batch, over all ranks and micro-steps "
                   f"({by_recipe('batch_size')}; --benchmark: 16 on a GPU, 2 on the CPU)")
    g.add_argument('--accum', type=common.positive_int, default=1, help="gradient accumulation steps (batch 16 x 8 = 128) "
                                                                         "(default %(default)s)")
    g.add_argument('--lr', type=common.positive_float, default=None, help=f"peak learning rate ({by_recipe('lr')})")
    g.add_argument('--warmup-epochs', type=common.nonneg_float, default=None, help=by_recipe('warmup_epochs'))
    g.add_argument('--weight-decay', type=common.nonneg_float, default=None, help=by_recipe('weight_decay'))
    g.add_argument('--clip', type=common.positive_float, default=None, help="grad clip (default 1.0; 0.1 when full fine-tuning)")
    g.add_argument('--layer-decay', type=common.unit_float, default=None, help="layer-wise lr decay (default 0.7 when full "
                                                                                "fine-tuning, else 1.0: none)")


def machinery_flags(g):
    """The machinery: precision, devices, workers, run folder, checkpoints, logging, testing, --benchmark."""
    g.add_argument('--dtype', default=None, help="fp32, bf16 or fp16 (autocast; default bf16 on CUDA, fp16 with loss "
                                                 "scaling on a GPU without bf16, fp32 on the CPU)")
    g.add_argument('--device', default=None, help="cpu, cuda or cuda:N (default: cuda if available; under torchrun "
                                                  "each rank takes cuda:LOCAL_RANK)")
    g.add_argument('--deterministic', action='store_true', help="deterministic CUDA kernels (PyTorch's deterministic "
                                                                "algorithms, a fixed cuBLAS workspace): exact resume on GPUs, slower")
    g.add_argument('--workers', type=common.nonneg_int, default=None, help="DataLoader workers per rank (default: 1 on the "
                                                                           "CPU; on GPUs the node's cores over its ranks, at most 8)")
    g.add_argument('--threads', type=common.positive_int, default=None, help="CPU threads per rank (default: its share of the cores)")
    g.add_argument('--out', default='runs', help="runs folder: OUT/<name>/{ckpt.pt,log.jsonl,export.pt} (default %(default)s)")
    g.add_argument('--name', default=None, help="run name (default: date-time and size)")
    g.add_argument('--resume', default=None, help="run folder or ckpt.pt to continue exactly")
    g.add_argument('--ckpt-every', type=common.nonneg_int, default=0, help="checkpoint every N steps too "
                                                                           "(default %(default)s: at each epoch's end only)")
    g.add_argument('--export', action=argparse.BooleanOptionalAction, default=True,
                   help="end with export.pt, LoRA merged into the weights, what track.py and evaluate.py load (default: yes)")
    g.add_argument('--log-every', type=common.positive_int, default=10, help="the progress line every N steps (default "
                                                                              "%(default)s); log.jsonl has a line per step")
    g.add_argument('--kill-at', type=common.positive_int, default=None, help="testing: SIGKILL this process once step N is "
                                                                             "logged (and checkpointed, at an epoch's end)")
    g.add_argument('--interrupt-at', type=common.positive_int, default=None, help=argparse.SUPPRESS)  # testing: Ctrl-C in step N
    g.add_argument('--benchmark', action='store_true', help="LoRA vs full fine-tuning: step time and peak memory")
    g.add_argument('--bench-steps', type=common.positive_int, default=5, help="timed steps per mode (default %(default)s)")
    g.add_argument('--bench-mode', default=None, help=argparse.SUPPRESS)  # one mode, in a fresh process


def parse_args(argv=None):
    p = parser()
    args = p.parse_args(argv)
    if args.dtype is not None and args.dtype not in common.DTYPES:
        p.error(f"--dtype {args.dtype}: choose one of {', '.join(common.DTYPES)}")
    if args.scratch and args.weights:
        p.error("--scratch trains from random init and --weights names a backbone to adapt: give one of them")
    return with_recipe(args)


def with_recipe(args):
    """The flags not given that depend on the case (the size, its recipe, full fine-tuning, --benchmark), set."""
    if args.benchmark and args.batch_size is None:  # B-224's batch that fits anywhere
        args.batch_size = 16 if torch.cuda.is_available() else 2
    args.data = args.data or DEFAULT_DATA.get(args.size, PAPER_MIX)
    args.data_weights = args.data_weights or DEFAULT_DATA_WEIGHTS.get(args.data)
    case = 'scratch' if args.scratch else 'lorat-cpu' if args.size == 'T' else 'lorat'  # whose recipe applies
    if case == 'lorat' and args.data == 'got10k' and args.epochs is None:
        args.epochs = GOT10K_EPOCHS
    for key, value in RECIPES[case].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if case != 'scratch' and args.lora_rank is None:
        args.lora_rank = lorat.SIZES[args.size].lora_rank
    fine_tuning_all = args.full_finetune and not args.scratch  # from scratch there is no pretraining to protect
    args.clip = args.clip if args.clip is not None else (0.1 if fine_tuning_all else 1.0)
    args.layer_decay = args.layer_decay if args.layer_decay is not None else (0.7 if fine_tuning_all else 1.0)
    return args

# -----------------------------------------------------------------------------
# Model, optimizer, schedule


def build(args):
    """The model of these flags, its backbone loaded and its trainable parameters marked; and the mode."""
    lora = not args.scratch and not args.full_finetune
    # the backbone is built on the meta device and takes the (memory-mapped) tensors of the file: no rank
    # holds a randomly initialized copy of it in host memory, nor spends time drawing one
    model = lorat.build_model(args.size, args.res, head=args.head, pos_emb=args.pos_emb, type_emb=not args.no_type_emb,
                              fg=not args.no_fg, lora_init=args.lora_init, lora_rank=args.lora_rank if lora else 0,
                              backbone_device=None if args.scratch else 'meta')
    if not args.scratch:
        lorat.load_dinov2(model, args.weights or lorat.default_backbone(args.size), flag='--weights')
    lorat.mark_trainable(model, 'lora' if lora else 'full')
    return model, 'lora' if lora else 'full'


def no_weight_decay(name, p):
    """Biases, norms and embeddings are not decayed, as in LoRAT: decay would only pull them to 0."""
    return p.ndim < 2 or 'norm' in name or name in ('token_type_embed', 'pos_embed', 'template_pos_embed')


def layer_id(name, depth):
    """0 for the embeddings, i + 1 for block i, depth + 1 for what sits on top (final norm, types, head)."""
    if name.startswith(('patch_embed', 'pos_embed', 'template_pos_embed')):
        return 0
    if name.startswith('blocks.'):
        return int(name.split('.')[1]) + 1
    return depth + 1


def param_groups(model, weight_decay, layer_decay):
    """AdamW groups by (decay, lr scale); layer-wise decay scales block i's lr by decay^(depth + 1 - id)."""
    depth, groups = model.cfg.depth, {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            wd = 0.0 if no_weight_decay(name, p) else weight_decay
            scale = layer_decay ** (depth + 1 - layer_id(name, depth))
            groups.setdefault((wd, scale), []).append(p)
    return [dict(params=ps, weight_decay=wd, lr_scale=s) for (wd, s), ps in groups.items()]


def get_lr(step, total_steps, warmup_steps, lr):
    """Linear warm-up from 1e-7, then cosine to 1e-6, per iteration: a pure function of the step."""
    if step < warmup_steps:
        return WARMUP_LR + (lr - WARMUP_LR) * step / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return MIN_LR + (lr - MIN_LR) * 0.5 * (1 + math.cos(math.pi * progress))


def grad_groups(model):
    """The module groups whose gradient norms the log keeps: backbone LoRA (or backbone), type table, head."""
    groups = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            group = ('head' if name.startswith('head.') else 'type_embed' if name == 'token_type_embed'
                     else 'lora' if '.lora.' in name else 'backbone')
            groups.setdefault(group, []).append(p)
    return groups


def grad_norm(params):
    """The L2 norm of these parameters' gradients, left on the device (one _foreach_norm, no host sync)."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros((), device=params[0].device)
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)).float())

# -----------------------------------------------------------------------------
# Data: global indices are a pure function of the step, samples a pure function of the index


def data_root(args, names):
    """--data-root, else $LORAT_DATA; missing while a named dataset lives on disk: one line that says how."""
    root = args.data_root or os.environ.get('LORAT_DATA')
    on_disk = [n for n in names if not n.startswith('synthetic')]
    if root is None and on_disk:
        folders = ', '.join(f"{data.DATASETS[n]}/" for n in on_disk if data.DATASETS.get(n))
        raise ValueError(f"--data {','.join(names)} reads datasets from disk, and no data root is given: pass "
                         f"--data-root DIR or set LORAT_DATA=DIR" + (f", DIR holding {folders}" if folders else '')
                         + " (--data synthetic needs none)")
    return root


def open_datasets(args, split):
    names = [n.strip() for n in args.data.split(',')]
    root = data_root(args, names)
    weights = [float(w) for w in args.data_weights.split(',')] if args.data_weights else [1.0] * len(names)  # check()ed
    # in LoRAT's mix GOT-10k contributes its VOT-excluded part; the GOT-10k protocol trains on all of it
    split_of = lambda n: ('vot_' + split) if n == 'got10k' and len(names) > 1 else split
    sets = [data.open_dataset(n, root, split=split_of(n), partial=args.partial) for n in names]
    for seqs in sets:  # the boxes against the frames (two file checks a sequence), not a crash hours in
        if isinstance(seqs, list):
            for seq in seqs:
                seq.check(first_box=False)
    return sets, weights


def open_validation(args):
    """The held-out sequences: synthetic's or GOT-10k's val (VOT-excluded in LoRAT's mix); the other sets have none."""
    names = [n.strip() for n in args.data.split(',')]
    if 'synthetic' in names:  # held-out clips: seeds and photos that training never sees
        return data.open_dataset('synthetic', split='val')
    if 'got10k' in names:
        try:
            return data.open_dataset('got10k', data_root(args, names), split='vot_val' if len(names) > 1 else 'val',
                                     partial=args.partial)
        except data.NonePresent as e:  # only with --partial: no held-out sequence among those present
            print(f"--partial: no validation ({e})", file=sys.stderr)
    return None


def pairs(datasets, weights, cfg, samples, seed, augment):
    return data.TrainingPairs(datasets, weights, template_size=cfg.template_size, search_size=cfg.search_size,
                              search_factor=cfg.search_factor, samples_per_epoch=samples, seed=seed, augment=augment)


class StepSampler(torch.utils.data.Sampler):
    """The micro-batches of this rank, from `start` on: step s covers the global indices
    epoch * samples_per_epoch + [k * batch, (k + 1) * batch), and each (micro-step, rank) takes its slice."""

    def __init__(self, start, total, steps_per_epoch, samples_per_epoch, batch, accum, rank, world):
        self.__dict__.update(start=start, total=total, spe=steps_per_epoch, samples=samples_per_epoch,
                             batch=batch, accum=accum, rank=rank, world=world)
        self.micro = batch // (accum * world)

    def __len__(self):
        return (self.total - self.start) * self.accum

    def __iter__(self):
        for step in range(self.start, self.total):
            epoch, k = divmod(step, self.spe)
            first = epoch * self.samples + k * self.batch
            for m in range(self.accum):
                offset = first + (m * self.world + self.rank) * self.micro
                yield list(range(offset, offset + self.micro))


@torch.no_grad()
def validate(model, val_set, device, ctx, rank, world, batch=64):
    """Mean IoU of the top-scoring box on held-out pairs (augmentation off), split across ranks."""
    model.eval()
    total = torch.zeros(2, dtype=torch.float64, device=device)  # (sum IoU, count)
    mine = list(range(rank, len(val_set), world))
    for i in range(0, len(mine), batch):
        b = torch.utils.data.default_collate([val_set[j] for j in mine[i:i + batch]])
        b = {k: v.to(device) for k, v in b.items()}
        with ctx:
            score, boxes = model(b['z'], b['x'], b['z_mask'])
        best = score.flatten(1).argmax(1)
        pred = boxes.flatten(1, 2)[torch.arange(len(best), device=device), best]  # (B, 4)
        iou = lorat.box_iou(pred.float(), b['x_box'].float())
        total += torch.stack([iou.sum().double(), torch.tensor(len(iou), dtype=torch.float64, device=device)])
    if world > 1:
        dist.all_reduce(total)
    model.train()
    return (total[0] / total[1].clamp(min=1)).item()

# -----------------------------------------------------------------------------
# Checkpoints: only what is trained, plus what an exact resume needs; written atomically


def save_checkpoint(run_dir, model, optimizer, scaler, step, args, rngs):
    """ckpt.pt: the trained tensors, what an exact resume needs, and the backbone by absolute path and sha256."""
    ckpt = dict(config=asdict(model.cfg), model=lorat.trainable_state_dict(model), optimizer=optimizer.state_dict(),
                scaler=scaler.state_dict(), step=step, rng=rngs, args=vars(args), weights=args.weights,
                weights_sha256=args.weights_sha256)
    common.write_atomic(os.path.join(run_dir, 'ckpt.pt'), lambda tmp: torch.save(ckpt, tmp))
    common.write_text_atomic(os.path.join(os.path.dirname(run_dir), 'latest'), os.path.basename(run_dir) + '\n')


def export(run_dir, model):
    """export.pt: LoRA folded into the weights, every tensor, no optimizer. Merged on the CPU, in a copy built on
    the meta device: no second model on the GPU."""
    tensors = {k: v.detach().to('cpu', torch.float32, copy=True) for k, v in model.state_dict().items()}
    with torch.device('meta'):
        merged = lorat.LoRAT(model.cfg)
    merged.load_state_dict(tensors, assign=True)
    merged.merge()
    path = os.path.join(run_dir, 'export.pt')
    ckpt = dict(config=asdict(merged.cfg), model=merged.state_dict(), merged=True)
    common.write_atomic(path, lambda tmp: torch.save(ckpt, tmp))
    return path


def resume_command(argv, run_dir, world=1, local_world=None):
    """The command line that continues this run: the same flags, --resume <run folder>; on several nodes
    (world > LOCAL_WORLD_SIZE) torchrun's multi-node form, to start on every node."""
    argv, kept = list(sys.argv[1:] if argv is None else argv), []
    while argv:
        a = argv.pop(0)
        if a in ('--resume', '--interrupt-at', '--kill-at'):
            argv = argv[1:]
        elif not a.startswith(('--resume=', '--interrupt-at=', '--kill-at=')):
            kept.append(a)
    local_world = local_world or int(os.environ.get('LOCAL_WORLD_SIZE', world))
    start = f"torchrun --nproc_per_node={world}" if world > 1 else "python"
    if world > local_world:
        endpoint = f"{os.environ.get('MASTER_ADDR', 'HOST')}:{os.environ.get('MASTER_PORT', '29500')}"
        start = (f"torchrun --nnodes={world // local_world} --nproc_per_node={local_world} --rdzv-backend=c10d "
                 f"--rdzv-endpoint={endpoint}")
    return f"{start} train.py {shlex.join(kept + ['--resume', run_dir])}"


def load_checkpoint(path, model, args):
    """The checkpoint to resume from, after checking it was made by this model and recipe."""
    path = os.path.join(path, 'ckpt.pt') if os.path.isdir(path) else path
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--resume {path}: no such checkpoint")
    try:
        ckpt = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as e:  # truncated, overwritten, not a checkpoint at all
        raise ValueError(f"--resume {path}: the file is damaged or not a checkpoint ({type(e).__name__}): "
                         f"resume from a good copy, or start a new run") from None
    if not isinstance(ckpt, dict) or not {'config', 'model', 'optimizer', 'step', 'rng', 'args'} <= set(ckpt):
        raise ValueError(f"--resume {path}: not a train.py ckpt.pt (an export.pt holds no optimizer state): "
                         f"resume from the run folder")
    if ckpt.get('weights_sha256') and args.weights_sha256 and ckpt['weights_sha256'] != args.weights_sha256:
        raise ValueError(f"cannot resume {path}: its backbone {args.weights} has changed since "
                         f"(sha256 {args.weights_sha256[:16]}... vs {ckpt['weights_sha256'][:16]}...)")
    theirs, ours = ckpt['config'], asdict(model.cfg)
    diff = [f"{k} {theirs.get(k)} vs {ours[k]}" for k in ours if theirs.get(k) != ours[k]]
    if diff:
        raise ValueError(f"cannot resume {path}: it holds a {theirs['size']}-{theirs['res']} model and this run "
                         f"builds {ours['size']}-{ours['res']} ({', '.join(diff[:4])}): pass the run's own flags")
    diff = [f"--{k.replace('_', '-')} {ckpt['args'].get(k)} vs {getattr(args, k)}" for k in SAME_ON_RESUME
            if ckpt['args'].get(k) != getattr(args, k)]
    if diff:
        raise ValueError(f"cannot resume {path} exactly: it was trained with other flags ({', '.join(diff)})")
    return path, ckpt

# -----------------------------------------------------------------------------
# Machinery: ranks, devices, the flags checked


def setup(args):
    """torchrun's RANK/WORLD_SIZE/LOCAL_RANK turn on DDP: NCCL on CUDA, gloo on CPU; one GPU per rank."""
    ddp = 'RANK' in os.environ
    rank, world, local_rank = (int(os.environ[k]) for k in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK')) if ddp else (0, 1, 0)
    if args.deterministic:
        # cuBLAS picks reduction orders per workspace unless it is given a fixed one, set before its first use
        os.environ.setdefault('CUBLAS_WORKSPACE_CONFIG', ':4096:8')
        torch.use_deterministic_algorithms(True)  # an op with no deterministic kernel stops the run, it never drifts
        torch.backends.cudnn.benchmark = False
    device = place(args, local_rank if ddp else None)
    if ddp:
        # rank 0 writes checkpoints while the others wait in the next collective: give it time
        dist.init_process_group('nccl' if device.startswith('cuda') else 'gloo', timeout=datetime.timedelta(minutes=60))
    return ddp, rank, world, local_rank, device


def place(args, local_rank=None):
    """This process's device, its CPU threads when given (else chosen in `loader`, once the loader's work can be
    measured) and --dtype's default. -> the device"""
    device = common.resolve_device(args.device or ('cuda' if torch.cuda.is_available() else 'cpu'), local_rank)
    if device.startswith('cuda'):
        torch.cuda.set_device(device)  # first: whatever asks "the current GPU" must not open a context on GPU 0
    elif args.threads:
        torch.set_num_threads(args.threads)
    args.dtype = args.dtype or common.default_dtype(device, training=True)
    if args.dtype == 'fp16' and device == 'cpu':
        raise ValueError("--dtype fp16 is for GPUs without bf16 (with loss scaling); on the CPU use fp32 or bf16")
    return device


def resolve_weights(args, local_rank):
    """The backbone this run adapts, as an absolute path (None with --scratch): --weights, else the size's
    default, which local rank 0 downloads while the other ranks of its node wait."""
    if args.scratch:
        return None
    if args.weights and args.weights.startswith(('http://', 'https://')):
        return args.weights
    if args.weights:
        if os.path.isdir(args.weights):
            raise IsADirectoryError(f"--weights {args.weights} is a folder: give the backbone file (DINOv2's layout) in it")
        if not os.path.isfile(args.weights):
            raise FileNotFoundError(f"--weights {args.weights}: no such file (the DINOv2 backbone, e.g. "
                                    f"dinov2_vitl14_pretrain.pth from github.com/facebookresearch/dinov2)")
        return os.path.abspath(args.weights)
    path = lorat.default_backbone(args.size, download=local_rank == 0)
    while not os.path.isfile(path):  # not a collective: a long download cannot time out the other ranks
        time.sleep(2)  # (if local rank 0 fails, torchrun stops this process)
    return path


def check(args, world):
    """What the flags cannot say alone, checked before any heavy work: a ValueError (main prints it as one line)."""
    lorat.make_config(args.size, args.res, head=args.head, pos_emb=args.pos_emb, lora_init=args.lora_init)
    if args.batch_size % (args.accum * world):
        raise ValueError(f"--batch-size {args.batch_size} is not divisible by --accum {args.accum} x {world} ranks")
    if args.samples_per_epoch < args.batch_size:
        raise ValueError(f"--samples-per-epoch {args.samples_per_epoch} is smaller than --batch-size {args.batch_size}")
    names = [n.strip() for n in args.data.split(',')]
    if args.data_weights and len(args.data_weights.split(',')) != len(names):
        raise ValueError(f"--data-weights {args.data_weights} has {len(args.data_weights.split(','))} values for "
                         f"the {len(names)} datasets of --data {args.data}: give one weight per dataset")
    if not args.resume:
        common.check_writable(args.out, '--out', folder=True)
    if not args.resume and args.name:
        refuse_existing_run(os.path.join(args.out, args.name))


def refuse_existing_run(run_dir):
    """A new run never writes into another run's folder: one line that says to continue that run or rename this one."""
    if not any(os.path.exists(os.path.join(run_dir, f)) for f in ('ckpt.pt', 'export.pt', 'log.jsonl')):
        return
    state = 'a run'
    try:
        with open(os.path.join(run_dir, 'log.jsonl')) as f:
            last = json.loads(f.read().strip().splitlines()[-1])
        state = f"a finished run ({last['step']} steps)" if last.get('done') else f"a run stopped at step {last.get('step')}"
    except (OSError, ValueError, IndexError, KeyError):
        pass
    raise FileExistsError(f"{run_dir} already holds {state}: continue it with --resume {run_dir}, or give another --name "
                          f"(a new run never overwrites one)")


# -----------------------------------------------------------------------------
# A run, step by step: `train` (the last function) calls these top to bottom


@dataclass
class Run:
    """A started run: what its steps read. `start` makes it; the loop advances `step`."""
    args: argparse.Namespace
    ddp: bool  # under torchrun: this process is rank `rank` of `world`, one GPU each
    rank: int
    world: int
    device: str
    model: torch.nn.Module  # what the steps call: under DDP, raw_model's wrapper
    raw_model: torch.nn.Module  # the LoRAT itself: what is validated, checkpointed and exported
    mode: str  # 'lora' or 'full'
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler  # fp16's loss scaling; a pass-through otherwise
    ctx: contextlib.AbstractContextManager  # autocast to --dtype; off for fp32: one loop for every dtype
    steps_per_epoch: int
    total_steps: int
    warmup_steps: int
    run_dir: str = ''
    step: int = 0  # steps done

    def say(self, *text):
        if self.rank == 0:  # one rank speaks for all
            print(*text)


def start(args):
    """All that comes before the first step. -> the Run, its training and validation pairs, the resumed run's threads"""
    ddp, rank, world, local_rank, device = setup(args)
    check(args, world)
    train_sets, weights = open_datasets(args, 'train')  # first: a bad name or root fails before any heavy work
    val_seqs = open_validation(args)
    model, mode = model_of_run(args, device, local_rank, rank == 0)
    optimizer = torch.optim.AdamW(param_groups(model, args.weight_decay, args.layer_decay), lr=args.lr,
                                  betas=(0.9, 0.999), fused=True)  # one kernel for all tensors, CUDA and CPU
    # fp16 (GPUs without bf16) needs loss scaling, or small gradients flush to zero; off, it passes through
    scaler = torch.amp.GradScaler(torch.device(device).type, enabled=args.dtype == 'fp16')
    ctx = common.autocast(device, args.dtype)
    steps_per_epoch = args.samples_per_epoch // args.batch_size
    run = Run(args, ddp, rank, world, device, model, model, mode, optimizer, scaler, ctx, steps_per_epoch,
              total_steps=args.epochs * steps_per_epoch, warmup_steps=round(args.warmup_epochs * steps_per_epoch))
    threads = resume(run)
    if ddp:
        run.model = DDP(model, device_ids=[int(device.split(':')[1])] if device.startswith('cuda') else None)
    train_set = pairs(train_sets, weights, model.cfg, args.samples_per_epoch, args.seed, augment=args.augment == 'on')
    val_set = None
    if val_seqs and args.val_samples:
        val_set = pairs([val_seqs], [1.0], model.cfg, args.val_samples, args.seed + 1, augment=False)
    else:
        run.say("no validation: no held-out split among --data (synthetic or got10k have one)")
    return run, train_set, val_set, threads


def model_of_run(args, device, local_rank, master):
    """The model on its device and the run's backbone (path and sha256 recorded), alike on every rank. -> model, mode"""
    args.weights = resolve_weights(args, local_rank)
    local_file = args.weights and not args.weights.startswith(('http://', 'https://'))
    args.weights_sha256 = common.file_sha256(args.weights) if master and local_file else None  # recorded in ckpt.pt
    torch.manual_seed(args.seed)  # the same initial weights on every rank
    model, mode = build(args)
    model.grad_checkpoint = args.grad_checkpoint
    model.to(device)
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    n_all = sum(p.numel() for p in model.parameters())
    if master and args.weights:
        print(f"{mode}: training {n_train / 1e6:.2f}M of {n_all / 1e6:.1f}M parameters on the backbone {args.weights}")
    elif master:
        print(f"--scratch: no pretrained backbone, so all {n_all / 1e6:.2f}M parameters are trained from scratch")
    return model, mode


def resume(run):
    """Where the run starts: step 0, or --resume's checkpoint, its log cut back to it. -> the resumed run's threads"""
    args, rngs, threads = run.args, None, None
    if args.resume:
        path, ckpt = load_checkpoint(args.resume, run.raw_model, args)
        lorat.copy_tensors(run.raw_model, ckpt['model'], path)
        run.optimizer.load_state_dict(ckpt['optimizer'])
        if ckpt.get('scaler'):
            run.scaler.load_state_dict(ckpt['scaler'])
        run.step, rngs, threads = ckpt['step'], ckpt['rng'], ckpt['args'].get('threads')
        run.run_dir = os.path.dirname(os.path.abspath(path))
        run.say(f"resuming {path} at step {run.step}")
    else:
        cfg = run.raw_model.cfg
        name = args.name or time.strftime('%Y%m%d-%H%M%S') + f'-{cfg.size}{cfg.res}'
        run.run_dir = os.path.abspath(os.path.join(args.out, name))
    torch.manual_seed(args.seed + run.rank)  # drop path differs across ranks, like any other noise
    if rngs is not None and len(rngs) == run.world:
        common.set_rng_state(rngs[run.rank])
    if run.rank == 0:
        os.makedirs(run.run_dir, exist_ok=True)
        if args.resume:
            forget_after(os.path.join(run.run_dir, 'log.jsonl'), run.step)
    return threads


def forget_after(log_path, step):
    """A resumed run's log.jsonl keeps its lines up to the checkpoint's step: the run that was killed went further."""
    if os.path.exists(log_path):
        with open(log_path) as f:
            kept = [line for line in f if json.loads(line).get('step', 0) <= step]
        with open(log_path, 'w') as f:
            f.writelines(kept)


def loader(run, train_set, resumed_threads):
    """This rank's micro-batches from the run's step on, and the worker count (on the CPU the threads are set first)."""
    args, device = run.args, run.device
    local_world = int(os.environ.get('LOCAL_WORLD_SIZE', 1))
    workers = args.workers if args.workers is not None else common.default_workers(device, local_world)
    if device == 'cpu':
        # the thread count changes the rounding of the model's sums: a resumed run keeps the one it had
        args.threads = (args.threads or resumed_threads
                        or common.default_threads(local_world, workers > 0 and common.loader_is_busy(
                            *common.sample_costs(train_set, run.raw_model), common.available_cpus() // local_world, workers)))
        torch.set_num_threads(args.threads)
    sampler = StepSampler(run.step, run.total_steps, run.steps_per_epoch, args.samples_per_epoch, args.batch_size,
                          args.accum, run.rank, run.world)
    return iter(torch.utils.data.DataLoader(
        train_set, batch_sampler=sampler, num_workers=workers, pin_memory=device.startswith('cuda'),
        worker_init_fn=common.ignore_ctrl_c,
        generator=torch.Generator())), workers  # its own generator: making the loader draws nothing from the global RNG


def train_step(run, batches, groups, params):
    """One optimizer step on this rank's share of the next global batch, in --accum micro-steps. -> (loss, cls,
    reg, iou) and (total gradient norm, each group's), device tensors; the seconds spent waiting for the loader"""
    args, model = run.args, run.model
    tick = time.perf_counter()
    micro = [next(batches) for _ in range(args.accum)]
    data_wait = time.perf_counter() - tick  # the model idles while the loader has no batch ready
    # Nothing below reads the device: no .item(), no data-dependent shape, no copy of pageable memory to the
    # GPU (which waits for the queue), so a GPU never idles waiting for Python.
    micro = [{k: v.to(run.device, non_blocking=True) for k, v in b.items()} for b in micro]
    # the loss is normalized by the positives of the whole global batch, as if it were one batch
    num_pos = sum(lorat.positive_cells(b['x_box'], run.raw_model.cfg.search_grid).sum() for b in micro).float()
    if run.ddp:
        dist.all_reduce(num_pos)
    stats = torch.zeros(4, device=run.device)  # loss, cls, reg, iou
    for m, b in enumerate(micro):
        # sync gradients only on the last micro-step: the others just add to the local .grad
        sync = model.no_sync() if run.ddp and m < args.accum - 1 else contextlib.nullcontext()
        with sync:
            with run.ctx:
                score, boxes = model(b['z'], b['x'], b['z_mask'])
            # DDP averages gradients over ranks, so each rank's share is scaled back up by world
            loss, parts = lorat.lorat_loss(score, boxes, b['x_box'], num_pos_fn=lambda n: num_pos / run.world)
            run.scaler.scale(loss).backward()
        stats += torch.stack([loss.detach(), parts['cls'], parts['reg'], parts['iou'] / args.accum])
    run.scaler.unscale_(run.optimizer)  # the logged norms and the clip see the true gradients
    norms = torch.stack([grad_norm(ps) for ps in groups.values()])  # (G,), on the device
    total_norm = torch.nn.utils.clip_grad_norm_(params, args.clip)  # a device tensor (foreach on CUDA)
    run.scaler.step(run.optimizer)  # fp16: skipped when a gradient overflowed (a host sync: fp16 only)
    run.scaler.update()
    run.optimizer.zero_grad(set_to_none=True)
    return stats, torch.cat([total_norm[None], norms]), data_wait


class Log:
    """log.jsonl, a line per step (rank 0 writes it), and the progress line. A step's numbers stay on the device
    until a log step reads all the steps since the last one in one copy: on a GPU a read waits for the queue."""

    def __init__(self, path, groups, master, first_step):
        self.file = open(path, 'a') if master else None
        self.groups, self.pending = list(groups), []  # pending: (a step's record, its numbers on the device)
        self.t0, self.first, self.waited = time.time(), first_step, 0.0

    def add(self, record, numbers):
        """numbers: loss, cls, reg, iou, the stop flag, the total gradient norm, each group's norm."""
        self.pending.append((record, numbers))
        self.waited += record['data_wait_s']

    def read(self):
        """-> the pending steps as records, and whether a rank asked to stop (the last step's flag)."""
        values = torch.stack([v for _, v in self.pending]).tolist()
        records = [dict(r, loss=v[0], cls=v[1], reg=v[2], iou=v[3], grad_norm=v[5],
                        **{f'grad_norm/{g}': n for g, n in zip(self.groups, v[6:])})
                   for (r, _), v in zip(self.pending, values)]
        self.pending = []
        return records, values[-1][4] > 0

    def write(self, records):
        if self.file:
            self.file.writelines(json.dumps(r) + '\n' for r in records)
            self.file.flush()

    def progress(self, record, total_steps, steps_per_epoch, batch_size):
        """The progress line at `record`'s step: its numbers, samples/s since this process started, the ETA."""
        step, elapsed = record['step'], time.time() - self.t0
        sps = (step - self.first) * batch_size / elapsed
        return (f"step {step}/{total_steps} ({100 * step / total_steps:.0f}%) ep {step / steps_per_epoch:.2f} | "
                f"loss {record['loss']:.3f} (cls {record['cls']:.3f} reg {record['reg']:.3f}) iou {record['iou']:.3f} | "
                f"lr {record['lr']:.2e} | gnorm {record['grad_norm']:.2f} | {sps:.0f} samples/s, "
                f"{100 * self.waited / elapsed:.0f}% waiting for data | ETA {common.eta((total_steps - step) * batch_size / sps)}")


def report(run, log, val_set, epoch_end):
    """A log step: the steps since the last one read and logged (at an epoch's end with the held-out IoU), and the
    progress line. -> whether a rank asked to stop"""
    records, stopping = log.read()
    record, step = records[-1], run.step
    if epoch_end and val_set is not None:
        record['val_iou'] = validate(run.raw_model, val_set, run.device, run.ctx, run.rank, run.world)
    log.write(records)
    if step % run.args.log_every == 0 or epoch_end or step == run.total_steps:
        run.say(log.progress(record, run.total_steps, run.steps_per_epoch, run.args.batch_size))
    if 'val_iou' in record:
        run.say(f"epoch {step // run.steps_per_epoch}: held-out mean IoU {record['val_iou']:.3f}")
    return stopping


def checkpoint(run):
    """ckpt.pt at this step, with the RNG states of every rank (gathered: every rank calls this)."""
    rngs = [common.rng_state()]
    if run.ddp:
        rngs = [None] * run.world
        dist.all_gather_object(rngs, common.rng_state())
    if run.rank == 0:
        save_checkpoint(run.run_dir, run.raw_model, run.optimizer, run.scaler, run.step, run.args, rngs)


def fault_for_tests(args, step, log):
    """The one seam of the exact-resume tests, called between steps (`step`: the steps done). --interrupt-at N
    presses Ctrl-C as step N starts; --kill-at N sends SIGKILL once step N is logged (and checkpointed as usual),
    its log lines written: they lie past the checkpoint, and the resumed run must forget them."""
    if args.interrupt_at == step + 1:
        os.kill(os.getpid(), signal.SIGINT)
    if args.kill_at == step:
        if log.pending:
            log.write(log.read()[0])
        os.kill(os.getpid(), signal.SIGKILL)


def stopped(run, argv):
    """After a Ctrl-C's checkpoint: how to resume, and the shell's status of a run ended by Ctrl-C (130)."""
    run.say(f"stopped at step {run.step}/{run.total_steps}; checkpoint: {os.path.join(run.run_dir, 'ckpt.pt')}\n"
            f"resume with: {resume_command(argv, run.run_dir, run.world)}")
    if run.ddp:
        dist.destroy_process_group()
    raise SystemExit(130)


def finish(run, log):
    """The end: every rank's weights compared, the log's last line, ckpt.pt if this process wrote none, the export."""
    # every rank must end with the same weights; a mismatch means a broken gradient sync
    trained = lorat.trainable_state_dict(run.raw_model).values()
    digest = hashlib.sha1(b''.join(v.float().cpu().numpy().tobytes() for v in trained)).hexdigest()
    digests = [digest]
    if run.ddp:
        digests = [None] * run.world
        dist.all_gather_object(digests, digest)
        dist.destroy_process_group()  # no collective after this: rank 0's writing below cannot time out the others
    if run.rank != 0:
        return
    log.write([dict(step=run.step, done=True, rank_hashes=digests, minutes=(time.time() - log.t0) / 60)])
    log.file.close()
    ckpt = os.path.join(run.run_dir, 'ckpt.pt')
    if not os.path.exists(ckpt):  # a resumed run that had nothing left to do
        save_checkpoint(run.run_dir, run.raw_model, run.optimizer, run.scaler, run.step, run.args, [common.rng_state()])
    backbone = f" (only what was trained; its backbone is {run.args.weights})" if run.mode == 'lora' else ''
    run.say(f"checkpoint: {ckpt}{backbone}")
    run.optimizer = None  # its state (2x the trained tensors) is not needed to export
    if run.args.export:
        run.say(f"merged export: {export(run.run_dir, run.raw_model)}")


def train(args, argv=None):
    """A run: start (or resume exactly), steps to the schedule's end; a Ctrl-C saves and stops. -> run folder, model"""
    run, train_set, val_set, threads = start(args)
    batches, workers = loader(run, train_set, threads)
    groups, params = grad_groups(run.raw_model), [p for p in run.raw_model.parameters() if p.requires_grad]
    cfg = run.raw_model.cfg
    run.say(f"{cfg.size}-{cfg.res} on {args.data}: {args.epochs} epochs x {run.steps_per_epoch} steps of {args.batch_size} "
            f"({run.world} ranks x {args.accum} micro-steps), lr {args.lr:g}, {args.dtype} on {run.device}"
            + (f" ({args.threads} threads + {workers} loader workers)" if run.device == 'cpu' else '')
            + f"; run folder {run.run_dir}")
    log = Log(os.path.join(run.run_dir, 'log.jsonl'), groups, run.rank == 0, run.step)
    stop = common.CtrlC()
    while True:
        fault_for_tests(args, run.step, log)
        if run.step >= run.total_steps:
            break
        lr = get_lr(run.step, run.total_steps, run.warmup_steps, args.lr)
        for group in run.optimizer.param_groups:
            group['lr'] = lr * group['lr_scale']
        tick = time.perf_counter()
        stats, norms, data_wait = train_step(run, batches, groups, params)
        run.step += 1
        # the 5th number: did anyone press Ctrl-C? Summed over ranks, so that all of them stop at one step
        stats = torch.cat([stats, torch.full((1,), float(stop.requested), device=run.device)])
        if run.ddp:
            dist.all_reduce(stats)
            stats /= run.world
        log.add(dict(step=run.step, epoch=run.step / run.steps_per_epoch, lr=lr, step_s=time.perf_counter() - tick,
                     data_wait_s=data_wait), torch.cat([stats, norms]))
        epoch_end = run.step % run.steps_per_epoch == 0
        ckpt_step = epoch_end or run.step == run.total_steps or (args.ckpt_every and run.step % args.ckpt_every == 0)
        # Under DDP a Ctrl-C is agreed on at the next log step (each rank reads the summed flag there);
        # alone, this process knows at once.
        if not (ckpt_step or run.step % args.log_every == 0 or (stop.requested and not run.ddp)):
            continue
        stopping = report(run, log, val_set, epoch_end)
        if ckpt_step or stopping:
            checkpoint(run)
        if stopping:
            stopped(run, argv)
    stop.restore()
    finish(run, log)
    return run.run_dir, run.raw_model

# -----------------------------------------------------------------------------
# The paper's training-efficiency comparison: LoRA vs full fine-tuning, same batch


def benchmark_mode(args):
    """The median training step of one mode on random inputs, and its peak memory: one JSON line (printed in a
    fresh process, so that peak RSS is this mode's alone)."""
    device, dtype = place(args), args.dtype
    cuda = device.startswith('cuda')
    torch.manual_seed(0)
    lora = args.bench_mode == 'lora'
    with torch.device(device):  # initialized where it runs: a ViT-g drawn on the CPU takes minutes
        model = lorat.build_model(args.size, args.res, lora_rank=args.lora_rank if lora else 0)
    lorat.mark_trainable(model, 'lora' if lora else 'full')
    model.grad_checkpoint = args.grad_checkpoint
    optimizer = torch.optim.AdamW(param_groups(model, 0.1, 1.0), lr=1e-4)
    inputs = lorat.example_inputs(model.cfg, args.batch_size, device)
    gt = torch.tensor([[0.4, 0.4, 0.6, 0.6]], device=device).repeat(args.batch_size, 1)
    ctx = common.autocast(device, dtype)
    mode = args.bench_mode + (' + ckpt' if args.grad_checkpoint else '')

    def step():  # forward, loss, backward, AdamW
        with ctx:
            score, boxes = model(*inputs)
        lorat.lorat_loss(score, boxes, gt)[0].backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    try:
        seconds = common.median_seconds(step, device, warmup=2, iters=args.bench_steps)
    except torch.OutOfMemoryError:  # full fine-tuning of g without checkpointing, on a smaller GPU
        return print(json.dumps(dict(mode=mode, step_ms=None, peak_gb=None, trainable_m=0, device=device, dtype=dtype)))
    peak = torch.cuda.max_memory_allocated(device) if cuda else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print(json.dumps(dict(mode=mode, step_ms=1e3 * seconds, peak_gb=peak / 1e9, trainable_m=trainable / 1e6,
                          device=device, dtype=dtype)))


def saved_bytes_per_block(size, tokens, batch=1, lora_rank=64):
    """Bytes autograd keeps for the backward pass from one LoRA block's training forward under bf16 autocast (CPU),
    each storage once; parameters not counted (resident anyway), their bf16 copies made by autocast counted."""
    cfg = lorat.make_config(size)
    block = lorat.Block(cfg.dim, cfg.num_heads, cfg.ffn, cfg.ffn_hidden, cfg.drop_path).train()
    for layer in [m for m in block.modules() if isinstance(m, lorat.Linear)]:
        layer.add_lora(lora_rank, lora_rank)
    for name, p in block.named_parameters():
        p.requires_grad = '.lora.' in name
    params = {p.untyped_storage().data_ptr() for p in block.parameters()}
    saved = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            saved[storage.data_ptr()] = storage.nbytes()
        return t

    x = torch.randn(batch, tokens, cfg.dim, requires_grad=True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), common.autocast('cpu', 'bf16'):
        block(x)
    return sum(saved.values())


def memory_estimate(size, res, batch, grad_checkpoint, lora_rank=64):
    """Peak GPU memory of a LoRA training step (GB): fp32 weights, gradients and AdamW moments of what is trained, and
    the activations, from the saved bytes of one block measured on the CPU at two token counts (a constant part and
    a part per token); with checkpointing each block keeps its fp32 input and one block at a time is recomputed.
    Workspace and fragmentation not counted."""
    cfg = lorat.make_config(size, res)
    n1, n2 = 64, 128
    b1, b2 = saved_bytes_per_block(size, n1), saved_bytes_per_block(size, n2)
    per_token = (b2 - b1) / (n2 - n1)
    fixed = b1 - n1 * per_token
    tokens = batch * (cfg.template_grid ** 2 + cfg.search_grid ** 2)
    block = fixed + tokens * per_token
    with torch.device('meta'):
        model = lorat.build_model(size, res, lora_rank=lora_rank)
    weights = sum(p.numel() for p in model.parameters()) * 4
    states = sum(p.numel() for p in model.parameters() if p.requires_grad) * 4 * 3  # grad + two moments
    activations = cfg.depth * tokens * cfg.dim * 4 + block if grad_checkpoint else cfg.depth * block
    return dict(bytes_per_token_channel=per_token / cfg.dim, block_gb=block / 1e9,
                peak_gb=(weights + states + activations) / 1e9)


def benchmark(args):
    """LoRA against full fine-tuning (and with --grad-checkpoint, LoRA with it), each mode in a fresh process."""
    res = {}
    modes = [('lora', False), ('full', False)] + ([('lora', True)] if args.grad_checkpoint else [])
    for mode, ckpt in modes:
        cmd = [sys.executable, os.path.abspath(__file__), '--benchmark', '--bench-mode', mode, '--size', args.size,
               '--batch-size', str(args.batch_size), '--bench-steps', str(args.bench_steps),
               '--lora-rank', str(args.lora_rank or lorat.SIZES[args.size].lora_rank)] + ['--grad-checkpoint'] * ckpt
        for flag, value in (('--res', args.res), ('--dtype', args.dtype), ('--device', args.device), ('--threads', args.threads)):
            cmd += [flag, str(value)] if value is not None else []
        # glibc raises its mmap threshold as tensors are freed and then keeps freed memory in the heap, so
        # peak RSS would measure the allocator's history; a fixed threshold makes it measure live tensors
        env = {**os.environ, 'MALLOC_MMAP_THRESHOLD_': '65536'}
        out = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if out.returncode:
            raise ChildProcessError(f"the {mode} benchmark failed: {out.stderr.strip().splitlines()[-1]}")
        row = json.loads(out.stdout.strip().splitlines()[-1])
        res[row['mode']] = row
    lo, fu = res['lora'], res['full']
    memory = 'max allocated' if lo['device'].startswith('cuda') else 'peak RSS of the process'
    print(f"{args.size}-{lorat.make_config(args.size, args.res).res}, batch {args.batch_size}, {lo['dtype']} on {lo['device']}; memory = {memory}")
    ratio = lambda a, b, key: f"{a[key] / b[key]:.2f}" if a[key] and b[key] else '-'  # '-': out of memory
    for r in res.values():
        if r['step_ms'] is None:
            print(f"  {r['mode']:<12} out of memory")
        else:
            print(f"  {r['mode']:<12} trainable {r['trainable_m']:7.2f}M  step {r['step_ms']:8.1f} ms  memory {r['peak_gb']:6.2f} GB")
    print(f"  LoRA / full: time {ratio(lo, fu, 'step_ms')}, memory {ratio(lo, fu, 'peak_gb')}")
    if args.grad_checkpoint:
        ck = res['lora + ckpt']
        print(f"  checkpointing / not: time {ratio(ck, lo, 'step_ms')}, memory {ratio(ck, lo, 'peak_gb')}")
        cfg = lorat.make_config(args.size, args.res)
        tokens = cfg.template_grid ** 2 + cfg.search_grid ** 2
        saved = saved_bytes_per_block(args.size, tokens)
        print(f"  saved for backward per block and sample (bf16 autocast): {saved / 1e6:.2f} MB without "
              f"checkpointing, {tokens * cfg.dim * 4 / 1e6:.2f} MB with (the block's fp32 input)")
        for ckpt in (False, True):
            est = res[f"g-378 estimate{' + ckpt' * ckpt}"] = memory_estimate('g', 378, 16, ckpt)
            print(f"  estimate, g-378 LoRA batch 16 bf16 {'with' if ckpt else 'without'} checkpointing: "
                  f"{est['peak_gb']:.1f} GB ({est['bytes_per_token_channel']:.1f} bytes per token per channel "
                  f"per block); the paper: 25.8 GB")
    return res


# unknown size, resolution, head, dataset; a folder that cannot be made...: one line; the second Ctrl-C too
@common.main_errors(ctrl_c="stopped at once: --resume continues from the last checkpoint")
def main(argv=None):
    args = parse_args(argv)
    if args.bench_mode:
        return benchmark_mode(args)
    if args.benchmark:
        return benchmark(args)
    return train(args, argv)


if __name__ == '__main__':
    main()
