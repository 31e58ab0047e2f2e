"""Parsers of the tblite CalcJobs: ``summary.json`` and the npz output -> AiiDA nodes.

A scheduler exit code that the CalcJob already carries (e.g. 120, out of wall time) is kept: the parser
then attaches what it can read and returns that code rather than a missing-output one.
"""

import json

import numpy as np
from aiida import orm
from aiida.engine import ExitCode
from aiida.parsers import Parser

from aiida_irspec import NUMERICS_VERSION
from aiida_irspec.engines import jobs
from aiida_irspec.exceptions import DAMAGED_NPZ_ERRORS, open_npz

TRAJECTORY_UNITS = {"positions": "Angstrom (unwrapped)", "cells": "Angstrom", "times": "fs",
                    "velocities": "Angstrom/fs", "potential_energy": "eV", "kinetic_energy": "eV",
                    "temperature": "K", "dipoles": "|e| Angstrom"}
ERROR_EXIT_CODES = {"input": "ERROR_INVALID_INPUT", "periodic": "ERROR_PERIODIC_CELL",
                    "engine": "ERROR_ENGINE_FAILED", "drift": "ERROR_ENERGY_DRIFT"}


class TbliteParser(Parser):
    """Shared steps: keep a scheduler exit code, read the summary, map its error kind to an exit code."""

    CACHE_VERSION = NUMERICS_VERSION  # what it makes of the files is part of the package's results
    output_file = None

    def parse(self, **kwargs):
        scheduler_exit = self._scheduler_exit_code()
        summary, exit_code = self._read_summary()
        if summary is not None:
            self.out("misc", orm.Dict(summary))
        if exit_code is None:
            error = summary.get("error")
            if error in (None, "drift"):
                exit_code = self._read_output(summary)
            if exit_code is None and error is not None:
                exit_code = self.exit_codes[ERROR_EXIT_CODES.get(error, "ERROR_CORRUPT_SUMMARY")].format(
                    message=summary.get("message", ""), error=f"unknown error kind {error!r}")
        if scheduler_exit is not None:
            return scheduler_exit
        return exit_code or ExitCode(0)

    def _scheduler_exit_code(self):
        """The exit code the scheduler output parser set on the node before this parser ran, or None."""
        status = self.node.exit_status
        if status is None or status == 0:
            return None
        return ExitCode(status, self.node.exit_message)

    def _read_summary(self):
        """(summary dict, None) or (None, exit code)."""
        names = self.retrieved.base.repository.list_object_names()
        if jobs.SUMMARY_FILE not in names:
            return None, self.exit_codes.ERROR_MISSING_SUMMARY
        try:
            summary = json.loads(self.retrieved.base.repository.get_object_content(jobs.SUMMARY_FILE))
            if not isinstance(summary, dict) or summary.get("status") not in ("ok", "error"):
                raise ValueError("no 'status' of 'ok' or 'error'")
        except ValueError as error:
            return None, self.exit_codes.ERROR_CORRUPT_SUMMARY.format(error=str(error))
        return summary, None

    def _read_output(self, summary):
        """Read the npz output and attach the nodes; an exit code on failure, else None."""
        if self.output_file not in self.retrieved.base.repository.list_object_names():
            return self.exit_codes.ERROR_MISSING_OUTPUT_FILE.format(filename=self.output_file)
        try:
            with self.retrieved.base.repository.open(self.output_file, "rb") as handle:
                with open_npz(handle) as data:
                    arrays = {name: data[name] for name in data.files}
            nodes = self._nodes(arrays, summary)
        except DAMAGED_NPZ_ERRORS as error:
            return self.exit_codes.ERROR_CORRUPT_OUTPUT.format(filename=self.output_file, error=str(error))
        for name, node in nodes.items():
            self.out(name, node)
        return None

    def _nodes(self, arrays, summary):
        """Output name -> node from the npz arrays; raise ValueError/KeyError when they do not fit."""
        raise NotImplementedError

    def _symbols(self):
        structure = self.node.inputs.structure
        return [structure.get_kind(site.kind_name).symbol for site in structure.sites]


class TbliteBornChargesParser(TbliteParser):
    """``born_charges.npz`` -> ``born_charges`` (BornChargesData)."""

    output_file = jobs.BORN_CHARGES_FILE

    def _nodes(self, arrays, summary):
        from aiida_irspec.data.born_charges import BornChargesData
        from aiida_irspec.exceptions import InputError

        symbols = self._symbols()
        charges = np.asarray(arrays["born_charges"], dtype=float)
        if charges.shape != (len(symbols), 3, 3):
            raise ValueError(f"born_charges has shape {charges.shape}, expected ({len(symbols)}, 3, 3)")
        settings = summary.get("settings", {})
        source = {"engine": "tblite", "version": summary.get("engine_version"), "method": settings.get("method"),
                  "route": settings.get("route"), "displacement": settings.get("displacement"),
                  "accuracy": settings.get("accuracy")}
        try:
            return {"born_charges": BornChargesData(charges, symbols=symbols, source=source)}
        except InputError as error:
            raise ValueError(str(error)) from error


class TbliteMdParser(TbliteParser):
    """``trajectory.npz`` -> ``trajectory`` (TrajectoryData), ``final_structure``, ``final_velocities``."""

    output_file = jobs.TRAJECTORY_FILE

    def _nodes(self, arrays, summary):
        symbols = self._symbols()
        positions = np.asarray(arrays["positions"], dtype=float)
        frames = len(positions)
        if frames == 0 or positions.shape[1:] != (len(symbols), 3):
            raise ValueError(f"positions have shape {positions.shape}, expected (F, {len(symbols)}, 3)")
        velocities = np.asarray(arrays["velocities"], dtype=float)
        if velocities.shape != positions.shape:
            raise ValueError(f"velocities have shape {velocities.shape}, positions {positions.shape}")
        pbc = [bool(flag) for flag in arrays["pbc"]]
        info = json.loads(str(arrays["info"]))
        trajectory = orm.TrajectoryData()
        trajectory.set_trajectory(symbols, positions, stepids=np.arange(frames) * int(info["stride"]),
                                  cells=np.asarray(arrays["cells"], dtype=float),
                                  times=np.asarray(arrays["times"], dtype=float), velocities=velocities, pbc=pbc)
        for name in ("potential_energy", "kinetic_energy", "temperature", "dipoles"):
            if name in arrays:
                values = np.asarray(arrays[name], dtype=float)
                if len(values) != frames:
                    raise ValueError(f"{name} has {len(values)} frames, positions {frames}")
                trajectory.set_array(name, values)
        trajectory.base.attributes.set("units", TRAJECTORY_UNITS)
        trajectory.base.attributes.set("md", info)

        final = self.node.inputs.structure.clone()  # keeps the kinds of the input
        final.reset_cell(np.asarray(arrays["cells"][-1], dtype=float).tolist())
        final.reset_sites_positions(positions[-1].tolist())
        final_velocities = orm.ArrayData()
        final_velocities.set_array("velocities", velocities[-1])
        final_velocities.base.attributes.set("units", "Angstrom/fs")
        return {"trajectory": trajectory, "final_structure": final, "final_velocities": final_velocities}
