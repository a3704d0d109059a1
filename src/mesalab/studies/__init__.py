"""One package per study (see protocol.py). Studies are imported when first asked for, so a command that runs one
study does not import the others."""

from __future__ import annotations

import ast
import importlib
import importlib.util
from pathlib import Path
from types import ModuleType

# name → module, in the order `mesalab list` shows them
MODULES: dict[str, str] = {
    "gd-equivalence": "mesalab.studies.gd_equivalence",
    "mesa-dynamics": "mesalab.studies.mesa_dynamics",
    "mesa-reverse-engineering": "mesalab.studies.mesa_reverse",
    "induction-classification": "mesalab.studies.induction_classification",
    "induction-heads": "mesalab.studies.induction_heads",
    "induction-circuits": "mesalab.studies.induction_circuits",
    "sequential-functions": "mesalab.studies.sequential_functions",
    "attention-saes": "mesalab.studies.attention_saes",
    "in-context-language-learning": "mesalab.studies.in_context_language",
    "repeated-data": "mesalab.studies.repeated_data",
    "language-modelling": "mesalab.studies.language_modelling",
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


def describe(name: str) -> dict[str, str]:
    """A study's NAME, SUMMARY and SOURCE, read from its package's source without importing it (importing a study
    loads JAX and its models: seconds; `mesalab list` must answer at once)."""
    if name not in MODULES:
        raise UnknownStudyError(f"unknown study {name!r}; known studies: {', '.join(MODULES)}")
    spec = importlib.util.find_spec(MODULES[name])
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    found = {t.id: node.value.value for node in tree.body if isinstance(node, ast.Assign)
             and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
             for t in node.targets if isinstance(t, ast.Name) and t.id in ("NAME", "SUMMARY", "SOURCE")}
    if len(found) < 3:  # a study that computes them: import it after all
        mod = get_study(name)
        found = {k: getattr(mod, k) for k in ("NAME", "SUMMARY", "SOURCE")}
    return found


__all__ = ["DEFAULT_STUDY", "MODULES", "STUDIES", "UnknownStudyError", "describe", "get_study"]
