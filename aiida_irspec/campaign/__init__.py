"""The numerical side of campaigns (no AiiDA import): the spec schema and its validation (:mod:`.spec`),
choosing configurations (:mod:`.selection`), dP/dt along trajectory files (:mod:`.pdot`) and the comparison
of a spectrum with its reference (:mod:`.validation`)."""
