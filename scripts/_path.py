"""Puts this checkout first on ``sys.path``, so ``python scripts/x.py`` works before ``pip install -e .``."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
