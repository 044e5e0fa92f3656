"""`python -m mmcore.train <family> [options]`: train one bundled model on the Shapes world."""

import importlib
import sys

FAMILIES = ("vit", "clip", "vae", "blip", "blip2", "ldm")

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in FAMILIES:
        sys.exit(f"usage: python -m mmcore.train {{{','.join(FAMILIES)}}} [--help]")
    family = sys.argv.pop(1)
    importlib.import_module(f"mmcore.train.{family}").main()
