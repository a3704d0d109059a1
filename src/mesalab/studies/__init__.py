"""One file per finding. Each study has presets per scale, run(), claims() and figures() (see protocol.py)."""

from __future__ import annotations

from types import ModuleType

from mesalab.studies import gd_equivalence, induction_classification, induction_heads, mesa_dynamics, mesa_reverse

STUDIES: dict[str, ModuleType] = {gd_equivalence.NAME: gd_equivalence, mesa_dynamics.NAME: mesa_dynamics,
                                 mesa_reverse.NAME: mesa_reverse, induction_classification.NAME: induction_classification,
                                 induction_heads.NAME: induction_heads}
DEFAULT_STUDY = gd_equivalence.NAME


class UnknownStudyError(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


def get_study(name: str) -> ModuleType:
    if name not in STUDIES:
        raise UnknownStudyError(f"unknown study {name!r}; known studies: {', '.join(STUDIES)}")
    return STUDIES[name]


__all__ = ["DEFAULT_STUDY", "STUDIES", "UnknownStudyError", "get_study"]
