"""Train the bundled BLIP-2 on Shapes captions: a Q-Former with k = 8 learned queries between an image encoder and a
tiny OPT, as BLIP-2 bridges a pretrained image encoder and a language model.

    python -m mmcore.train blip2 --steps 5000 --seed 0

The image encoder starts from the bundled BLIP's (which already knows Shapes scenes): BLIP-2 keeps its image encoder
frozen, and `--vision-lr-scale 0` does the same; the default fine-tunes it at a tenth of the learning rate. The
Q-Former, the query tokens, the projection and the OPT decoder learn from scratch, on one loss: the caption's
next-token cross-entropy given the k soft-prompt vectors. Writes assets/models/blip2-shapes (fp16 safetensors,
processor, tokenizer, model card).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

from mmcore import blip as B
from mmcore import blip2 as B2
from mmcore import shapes
from mmcore.train.blip import lm_loss, trim
from mmcore.train.common import Clock, arguments, log, normalise, seed_everything, warmup_cosine, write_model_card

ROOT = Path(__file__).resolve().parents[2] / "assets" / "models"
OUT = ROOT / "blip2-shapes"
VISION_FROM = ROOT / "blip-shapes-caption"
TEXT_LENGTH = 20


def make_split(split: str, n: int, size: int, tokenizer, world: str) -> dict:
    """Images (n, 3, S, S) uint8, their scenes, and each caption's tokens: </s> caption </s>, padded."""
    images, scenes = shapes.batch(split, 0, n, size, world=world)
    texts = [shapes.caption(s) + tokenizer.eos_token for s in scenes]
    ids = tokenizer(texts, padding="max_length", truncation=True, max_length=TEXT_LENGTH, return_tensors="pt")
    return dict(x=torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), scenes=scenes, text=ids.input_ids)


def build_model(config, init: Path | None, vision_from: Path | None):
    from transformers import Blip2ForConditionalGeneration

    if init is not None:
        return Blip2ForConditionalGeneration.from_pretrained(init, dtype=torch.float32, use_safetensors=True,
                                                             local_files_only=True)
    model = Blip2ForConditionalGeneration(config)
    # transformers starts the queries at zero (weights are meant to be loaded); identical queries would read
    # identically until the LLM's positions pull them apart. BLIP-2 draws them from N(0, 0.02).
    torch.nn.init.normal_(model.query_tokens, std=config.qformer_config.initializer_range)
    if vision_from is not None:
        from transformers import BlipForConditionalGeneration

        blip = BlipForConditionalGeneration.from_pretrained(vision_from, dtype=torch.float32, use_safetensors=True,
                                                            local_files_only=True)
        model.vision_model.load_state_dict(blip.vision_model.state_dict(), strict=True)  # same names and sizes
    return model


def loss_of(model, x: torch.Tensor, text: torch.Tensor, pad: int, image_token: int) -> torch.Tensor:
    """The caption's next-token loss given the soft prompt: the LLM reads [k <image> placeholders ; text]."""
    k = model.config.num_query_tokens
    text = trim(text, pad)
    ids = torch.cat([torch.full((len(text), k), image_token), text], dim=1)
    out = model(pixel_values=normalise(x), input_ids=ids, attention_mask=(ids != pad).long())
    return lm_loss(out.logits[:, k:], text, pad)


@torch.no_grad()
def evaluate(model, processor, split: dict, n: int) -> float:
    """Greedy caption accuracy: every object's colour and shape named, nothing else."""
    model.eval()
    bundle = B2.Blip2Bundle(model, processor, torch.device("cpu"), torch.float32)
    texts = []
    for i in range(0, n, 250):
        texts += B2.captions(bundle, normalise(split["x"][i:i + 250]))
    model.train()
    return float(np.mean([B.caption_correct(t, s) for t, s in zip(texts, split["scenes"][:n])]))


def main() -> None:
    args = arguments(__doc__, steps=5000, lr=1e-3, eval_scenes=1_000, out=OUT, batch_size=64, world="classic",
                     extra=[("--vision-from", dict(type=Path, default=VISION_FROM,
                                                   help="the bundled BLIP whose image encoder starts ours")),
                            ("--vision-lr-scale", dict(type=float, default=0.1,
                                                       help="the image encoder's learning rate, as a fraction of "
                                                            "--lr; 0 freezes it, as BLIP-2 does"))])
    clock = Clock()
    gen = seed_everything(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    tokenizer = B2.build_tokenizer(args.out)
    config = B2.bundled_config(len(tokenizer))
    size = config.vision_config.image_size
    processor = B2.make_processor(tokenizer, size)
    train = make_split("train", args.train_scenes, size, tokenizer, args.world)
    val = make_split("val", args.eval_scenes, size, tokenizer, args.world)
    print(f"rendered {args.train_scenes} train / {args.eval_scenes} val scenes in {clock.minutes:.1f} min", flush=True)

    model = build_model(config, args.init, None if args.init else args.vision_from)
    model.train()
    vision = list(model.vision_model.parameters())
    rest = [p for n, p in model.named_parameters() if not n.startswith("vision_model.")]
    groups = [{"params": rest, "lr": args.lr}]
    if args.vision_lr_scale > 0:
        groups.append({"params": vision, "lr": args.lr * args.vision_lr_scale})
    else:
        for p in vision:
            p.requires_grad_(False)
        model.vision_model.eval()
    print(f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters, "
          f"{sum(p.numel() for g in groups for p in g['params']) / 1e6:.2f} M trained", flush=True)
    opt = torch.optim.AdamW(groups, weight_decay=0.05, betas=(0.9, 0.98))
    sched = warmup_cosine(opt, args.steps)
    pad, image_token = tokenizer.pad_token_id, config.image_token_index

    best, best_state = -1.0, None
    for step in range(1, args.steps + 1):
        idx = torch.randint(len(train["x"]), (args.batch_size,), generator=gen)
        loss = loss_of(model, train["x"][idx], train["text"][idx], pad, image_token)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for g in groups for p in g["params"]], 1.0)
        opt.step()
        sched.step()
        if step % 100 == 0:
            log(step, clock, loss=loss.item())
        if step % 1000 == 0 or step == args.steps:
            acc = evaluate(model, processor, val, min(500, args.eval_scenes))
            log(step, clock, val_caption_accuracy=acc)
            if acc >= best:
                best, best_state = acc, {k: v.clone() for k, v in model.state_dict().items()}

    model.load_state_dict(best_state)
    metrics = {}
    for split in ("test", "composition"):
        for world in shapes.WORLDS:
            data = make_split(split, args.eval_scenes, size, tokenizer, world)
            metrics[f"caption_accuracy_{split}_{world}"] = evaluate(model, processor, data, args.eval_scenes)
    metrics["scenes_per_split"] = args.eval_scenes
    print(json.dumps(metrics), flush=True)
    save(model, processor, args, clock, metrics)


def save(model, processor, args, clock: Clock, metrics: dict) -> None:
    out = args.out
    n_params = sum(p.numel() for p in model.parameters())
    model.to(torch.float16).save_pretrained(out)  # safetensors by default
    processor.save_pretrained(out)
    cfg = model.config
    frozen = args.vision_lr_scale == 0
    write_model_card(
        out, title="blip2-shapes: a tiny BLIP-2 trained on the Shapes world",
        summary="A `transformers` `Blip2ForConditionalGeneration`: an image encoder (n = "
                f"{(cfg.vision_config.image_size // cfg.vision_config.patch_size) ** 2} patches), a Q-Former with "
                f"k = {cfg.num_query_tokens} learned queries that cross-attend to the patches, a linear projection "
                "into the LLM's embedding space, and a tiny OPT decoder as the LLM, which reads the k projected "
                "vectors as a soft prompt and writes the caption. Same class, processor and loader as "
                "`Salesforce/blip2-opt-2.7b`; its tokenizer is a WordPiece tokenizer over the Shapes vocabulary "
                "with OPT's special tokens (every text starts with </s>).",
        command="python -m mmcore.train blip2 " + " ".join(sys.argv[1:]), seed=args.seed, minutes=clock.minutes,
        metrics=metrics,
        config={"vision": B.BUNDLED_VISION, "qformer": B2.BUNDLED_QFORMER, "opt": B2.BUNDLED_OPT,
                "num_query_tokens": cfg.num_query_tokens, "vocab_size": cfg.text_config.vocab_size,
                "parameters": n_params},
        data=f"{args.train_scenes} train scenes of the {args.world} Shapes world (seeds {shapes.SPLITS['train']}+), "
             f"{cfg.vision_config.image_size} px, 1-3 objects, each with its canonical caption (objects left to "
             "right). The image encoder started from the bundled BLIP's (" + args.vision_from.name + ") and was "
             + ("kept frozen, as BLIP-2 does." if frozen else
                f"fine-tuned at {args.vision_lr_scale:g}× the learning rate (BLIP-2 freezes it; ours is small "
                "enough to adapt).")
             + " The train split never shows the colour-shape pairs "
             f"{sorted(shapes.HELD_OUT_PAIRS)}; the composition split always contains one."
             + (f" Training continued from the weights in {args.init}." if args.init else ""))
    print(f"saved {out}", flush=True)


if __name__ == "__main__":
    main()
