"""Parser of ``irspec.predict_pdot``: pdot.npz -> ArrayData ``pdot``; a scheduler exit code is kept."""

import numpy as np
from aiida import orm
from aiida.engine import ExitCode
from aiida.parsers import Parser

from aiida_irspec import NUMERICS_VERSION
from aiida_irspec.calculations.predict import OUTPUT_FILE
from aiida_irspec.exceptions import DAMAGED_NPZ_ERRORS, open_npz

UNITS = {"times": "fs", "pdot": "|e| Angstrom/fs", "polarization": "|e| Angstrom"}


class PredictPdotParser(Parser):
    """Reads pdot.npz (times, and pdot or polarization, one row per frame) into the ``pdot`` output, with the
    route taken as its attribute ``route``."""

    CACHE_VERSION = NUMERICS_VERSION  # what it makes of the files is part of the package's results
    def parse(self, **kwargs):
        status = self.node.exit_status
        scheduler_exit = ExitCode(status, self.node.exit_message) if status not in (None, 0) else None
        if OUTPUT_FILE not in self.retrieved.base.repository.list_object_names():
            return scheduler_exit or self.exit_codes.ERROR_MISSING_OUTPUT
        try:
            with self.retrieved.base.repository.open(OUTPUT_FILE, "rb") as handle:
                with open_npz(handle) as data:
                    arrays = {name: data[name] for name in data.files}
            series = [name for name in ("pdot", "polarization") if name in arrays]
            if "times" not in arrays or len(series) != 1:
                raise ValueError(f"expected times and one of pdot, polarization; found {', '.join(arrays)}")
            if arrays[series[0]].shape != (len(arrays["times"]), 3) or not np.all(np.isfinite(arrays[series[0]])):
                raise ValueError(f"{series[0]} must be a finite ({len(arrays['times'])}, 3) array, "
                                 f"got shape {arrays[series[0]].shape}")
        except DAMAGED_NPZ_ERRORS as error:
            return scheduler_exit or self.exit_codes.ERROR_CORRUPT_OUTPUT.format(error=str(error))
        node = orm.ArrayData()
        for name in ("times", series[0]):
            node.set_array(name, arrays[name])
        node.base.attributes.set("units", {name: UNITS[name] for name in ("times", series[0])})
        node.base.attributes.set("route", "velocity" if series[0] == "pdot" else "polarization")
        self.out("pdot", node)
        return scheduler_exit or ExitCode(0)
