"""Train the bundled ViT on the Shapes world: classify the shape of the largest object in the scene.

    python -m mmcore.train vit --steps 7000 --seed 0
    python -m mmcore.train vit --world wide --init assets/models/vit-shapes   # fine-tune a saved model

The answer lives inside one object, so a model that solves it has to look at objects, which makes its attention maps
worth showing. Writes fp16 safetensors, the image-processor config and a model card to assets/models/vit-shapes/.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

from mmcore import shapes
from mmcore.train.common import (
    Clock,
    arguments,
    log,
    normalise,
    seed_everything,
    warmup_cosine,
    world_batch,
    world_words,
    write_model_card,
)
from mmcore.vit import BUNDLED_CONFIG

OUT = Path(__file__).resolve().parents[2] / "assets" / "models" / "vit-shapes"


def make_split(split: str, n: int, size: int, world: str = "wide") -> tuple[torch.Tensor, torch.Tensor]:
    """Images as uint8 tensors (n, 3, size, size), and the largest object's shape index (n,)."""
    images, scenes = world_batch(split, n, size, world, one_large=True)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    y = torch.tensor([shapes.SHAPES.index(shapes.largest(s).shape) for s in scenes])
    return x, y


def dihedral(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Each image turned by a random multiple of 90 degrees and mirrored half the time: a shape keeps its name under
    all eight (the wide world already turns shapes freely; this makes the turns free for every scene)."""
    k = torch.randint(4, (len(x),), generator=gen).to(x.device)
    flip = (torch.rand(len(x), generator=gen) < 0.5).to(x.device)
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    out = x.clone()
    for turns in range(1, 4):  # one rot90 per quarter-turn count, over all the images that drew it
        pick = k == turns
        out[pick] = torch.rot90(x[pick], turns, dims=(-2, -1))
    return out


@torch.no_grad()
def accuracy(model: ViTForImageClassification, x: torch.Tensor, y: torch.Tensor, bs: int = 500) -> float:
    model.eval()
    device = next(model.parameters()).device
    hits = sum((model(pixel_values=normalise(x[i:i + bs].to(device))).logits.argmax(-1).cpu() == y[i:i + bs]
                ).sum().item() for i in range(0, len(x), bs))
    model.train()
    return hits / len(x)


def main() -> None:
    args = arguments(__doc__, steps=7000, lr=1e-3, eval_scenes=2_000, out=OUT)
    clock = Clock()
    gen = seed_everything(args.seed)

    config = ViTConfig(**BUNDLED_CONFIG)
    size = config.image_size
    x_train, y_train = make_split("train", args.train_scenes, size, args.world)
    x_val, y_val = make_split("val", args.eval_scenes, size, args.world)
    print(f"rendered {len(x_train)} train / {len(x_val)} val scenes in {clock.minutes:.1f} min", flush=True)

    if args.init is None:
        model = ViTForImageClassification(config)
    else:
        model = ViTForImageClassification.from_pretrained(args.init, dtype=torch.float32, use_safetensors=True,
                                                          local_files_only=True)
    model.to(args.device)
    x_train, y_train = x_train.to(args.device), y_train.to(args.device)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{n_params / 1e6:.2f} M parameters, training on {args.device}", flush=True)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.05, betas=(0.9, 0.98))
    sched = warmup_cosine(opt, args.steps)

    best, best_state = -1.0, None
    for step in range(1, args.steps + 1):
        idx = torch.randint(len(x_train), (args.batch_size,), generator=gen).to(args.device)
        xb, yb = normalise(x_train[idx]), y_train[idx]
        xb = dihedral(xb, gen)
        loss = F.cross_entropy(model(pixel_values=xb).logits, yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 100 == 0:
            log(step, clock, loss=loss.item(), lr=sched.get_last_lr()[0])
        out_of_time = args.max_minutes is not None and clock.minutes >= args.max_minutes
        if step % 1000 == 0 or step == args.steps or out_of_time:
            acc = accuracy(model, x_val, y_val)
            log(step, clock, val_acc=acc)
            if acc >= best:
                best, best_state = acc, {k: v.clone() for k, v in model.state_dict().items()}
        if out_of_time:
            print(f"stopped at step {step} of {args.steps}: --max-minutes {args.max_minutes}", flush=True)
            break

    model.load_state_dict(best_state)
    model.cpu()
    metrics = {"val_accuracy": best, "steps_trained": step}
    for world in shapes.WORLDS:
        x_test, y_test = make_split("test", args.eval_scenes, size, world)
        metrics[f"test_accuracy_{world}"] = accuracy(model, x_test, y_test)
    metrics["test_scenes_per_world"] = args.eval_scenes
    print(metrics, flush=True)

    args.out.mkdir(parents=True, exist_ok=True)
    model.half().save_pretrained(args.out)  # safetensors by default
    ViTImageProcessor(size={"height": size, "width": size}, image_mean=[0.5] * 3, image_std=[0.5] * 3,
                      resample=2).save_pretrained(args.out)
    write_model_card(
        args.out, title="vit-shapes: a tiny ViT trained on the Shapes world",
        summary="A `transformers` `ViTForImageClassification` that names the shape of the largest object in a Shapes "
                f"scene ({', '.join(shapes.SHAPES)}). Same class and code path as `google/vit-base-patch16-224`.",
        command="python -m mmcore.train vit " + " ".join(sys.argv[1:]), seed=args.seed, minutes=clock.minutes,
        metrics=metrics, device=args.device,
        config={**BUNDLED_CONFIG, "parameters": n_params},
        data=f"{args.train_scenes} train scenes of the {world_words(args.world)} (seeds {shapes.SPLITS['train']}+), "
             f"{size} px, 1-3 objects with exactly one clearly largest; random turns by multiples of 90 degrees and "
             "mirror flips" + (f"; fine-tuned from {args.init}" if args.init else "") + ". Validation and test "
             "use their own seed ranges; the test split is scored in both worlds.")
    print(f"saved {args.out}", flush=True)


if __name__ == "__main__":
    main()
