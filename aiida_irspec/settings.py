"""Checks shared by every settings dictionary of the package (engine jobs, CalcJobs, WorkChains)."""


def unknown_settings(given, known):
    """A message naming the keys of ``given`` that are not in ``known`` (and listing the known ones), or None."""
    unknown = sorted(set(given) - set(known))
    if unknown:
        return f"unknown settings {', '.join(unknown)}; known: {', '.join(sorted(known))}"
    return None
