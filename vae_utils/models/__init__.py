"""The model families, one file each, each registering itself with `@register_model`: importing this package
imports every module in it, so a new file here is a new family with no other file touched."""
from __future__ import annotations

import importlib
import pkgutil

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    importlib.import_module(f"{__name__}.{_module}")
