"""Model families, one module each; importing this package registers every family's variants.

Every module of the package is imported, so a new family is its module and its card, with no edit here.
"""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
