"""One package per study (see protocol.py). Studies are imported when first asked for, so a command that runs one
study does not import the others."""

from __future__ import annotations

import importlib
from types import ModuleType

# name → module, in the order `mesalab list` shows them
MODULES: dict[str, str] = {
    "gd-equivalence": "mesalab.studies.gd_equivalence",
    "mesa-dynamics": "mesalab.studies.mesa_dynamics",
    "mesa-reverse-engineering": "mesalab.studies.mesa_reverse",
    "induction-classification": "mesalab.studies.induction_classification",
    "induction-heads": "mesalab.studies.induction_heads",
}
STUDIES = tuple(MODULES)
DEFAULT_STUDY = "gd-equivalence"


class UnknownStudyError(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


def get_study(name: str) -> ModuleType:
    if name not in MODULES:
        raise UnknownStudyError(f"unknown study {name!r}; known studies: {', '.join(MODULES)}")
    return importlib.import_module(MODULES[name])


__all__ = ["DEFAULT_STUDY", "MODULES", "STUDIES", "UnknownStudyError", "get_study"]
