"""One file per finding. Each study has presets per scale and a run() that trains, measures and reports."""

from mesalab.studies import gd_equivalence

STUDIES = {gd_equivalence.NAME: gd_equivalence}
DEFAULT_STUDY = gd_equivalence.NAME

__all__ = ["DEFAULT_STUDY", "STUDIES"]
