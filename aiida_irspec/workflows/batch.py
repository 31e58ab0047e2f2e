"""Batch fan-out for WorkChains: a queue of jobs, exactly ``max_concurrent`` of them running, as a sliding window.

:class:`FanOut` runs a queue of *units* (a reference frame, an NVE run), each a chain of one or more jobs (an
NVE run, then its prediction). As soon as ANY running job ends, the WorkChain wakes up, collects it and fills
the freed slot with the next job: a follow-up job of a unit first (``fan_out_follow``), else the next queued
unit. The outline of a WorkChain with a fan-out reads::

    cls.queue_something,                          # calls self.fan_out(kind, keys, ...)
    while_(cls.fan_out_busy)(cls.fan_out_step),
    cls.use_the_results,

and the WorkChain implements ``launch_job(kind, key)`` (submit one job with a call link label unique to that
job, returns its node), ``job_succeeded(kind, key, node)`` (keep its results; may call ``fan_out_follow``) and
``too_many_failures(failed, attempted)`` (attach what there is; returns the exit code).

Failures. A job that does not finish OK is reported (its exit status and message) and its unit is left out:
``ctx.failed[str(key)]`` holds the PK of the failed job. A job whose inputs are refused when it is launched
(``launch_job`` raises ``ValueError``, as port validation does) fails the same way, with ``None`` for the PK. The
failure fraction is checked each time a job has been collected or refused, against every unit the WorkChain has
queued so far (in all its fan-outs): when ``failed > max_failed_fraction * units``, the fan-out can no longer end
within the limit even if every other unit succeeds, so it stops: nothing more is launched, the jobs still running
are waited for and collected (nothing computed is lost), then ``too_many_failures(failed, attempted)`` gives the
exit code, with ``attempted`` the units that ended (succeeded or failed). A fan-out never stops when it would have
ended within the limit, and whether it stops does not depend on the order in which its jobs finish.

Waiting for any child. AiiDA's ``ToContext`` resumes a WorkChain only when ALL the children of a step have
ended. The step here puts every running job into the context under the ``fan_out_wake`` namespace, and
:meth:`FanOut._on_awaitable_finished` resumes the WorkChain as soon as one such awaitable resolves, like
aiida-workgraph's engine does for its tasks. ``WorkChain._do_step`` then forgets the awaitables still pending
(it starts every step with an empty list) while their callbacks stay registered with the runner; so

- the step reads the state of every running job from the database, never from the callbacks, and awaits
  the ones still running again;
- :meth:`FanOut._action_awaitables` registers one callback per child and process instance (not one per
  step), and :meth:`FanOut._on_awaitable_finished` resolves the awaitable of that child currently awaited,
  or nothing when the child is no longer awaited (it was collected already): no callback resolves twice.

After a crashed daemon worker the WorkChain is reloaded from its last checkpoint: the awaitables it waited
for are persisted and registered anew (a child that ended meanwhile calls back at once), and a step that
ran again launches each job under the same call link label, which :class:`SubmitOnce` turns into the job
launched before the crash. One window is not covered: a step interrupted after launching jobs that, run
again, finds a new failure over the limit launches nothing, and the jobs of the first attempt run on
unwatched.
"""

from aiida import orm

#: Context namespace of the awaitables that wake a fan-out step; ``ctx.fan_out`` holds its state.
WAKE = "fan_out_wake"


class FanOut:
    """Mixin for WorkChains (listed before ``WorkChain``): a sliding window of jobs (see the module doc).

    ``ctx.fan_out`` (persisted with the context) holds ``queue`` ([kind, key] not launched yet; its first
    ``follow_ups`` items are follow-ups), ``running`` ([kind, key, pk] in launch order), ``units`` (units
    queued, in all fan-outs of the WorkChain), ``ended`` (units that succeeded or failed), ``stopping`` and
    the two limits.
    """

    #: What a unit is called in reports ("frame", "run").
    FAN_OUT_UNIT = "job"

    # ------------------------------------------------------------------ for the WorkChain
    def fan_out(self, kind, keys, max_concurrent, max_failed_fraction):
        """Queue one unit per key, whose first job is of ``kind`` (a name for reports: "reference job").

        Keys (int or str) must be unique among all units of the WorkChain; ``max_concurrent`` (>= 1) and
        ``max_failed_fraction`` (0 to 1) hold from now on.
        """
        state = self.ctx.setdefault("fan_out", {"queue": [], "follow_ups": 0, "running": [], "units": 0,
                                                "ended": 0, "stopping": False})
        self.ctx.setdefault("failed", {})
        state.update(max_concurrent=int(max_concurrent), max_failed_fraction=float(max_failed_fraction))
        state["queue"].extend([kind, key] for key in keys)
        state["units"] += len(keys)

    def fan_out_follow(self, kind, key):
        """From ``job_succeeded``: the next job of unit ``key``, launched before any unit not yet started
        (follow-ups in the order they were given)."""
        state = self.ctx.fan_out
        state["queue"].insert(state["follow_ups"], [kind, key])
        state["follow_ups"] += 1

    def fan_out_busy(self):
        """Outline condition: jobs are queued or running."""
        state = self.ctx.get("fan_out")
        return bool(state and (state["queue"] or state["running"]))

    def fan_out_step(self):
        """Outline step: collect the jobs that ended, check the failure fraction, fill the free slots, and wait
        for the first of the running jobs to end; the exit code of ``too_many_failures`` once a stopping
        fan-out has no job left running."""
        state = self.ctx.fan_out
        self.ctx.pop(WAKE, None)  # placeholders and nodes of earlier wake-ups: the database says what ended
        self._fan_out_collect(state)
        units, failed = state["units"], len(self.ctx.failed)
        if not state["stopping"] and self._over_the_limit(state):
            state["stopping"] = True
            self.report(f"{failed} of {units} {self.FAN_OUT_UNIT}s failed, more than the allowed fraction "
                        f"{state['max_failed_fraction']}: stopping; waiting for the {len(state['running'])} "
                        f"running job(s)")
        if not state["stopping"]:
            self._fan_out_launch(state)
        if state["running"]:
            return {f"{WAKE}.pk_{pk}": orm.load_node(pk) for _, _, pk in state["running"]}
        if state["stopping"]:
            return self.too_many_failures(failed, state["ended"])
        return None

    # ------------------------------------------------------------------ for the WorkChain to implement
    def launch_job(self, kind, key):
        """Submit the job ``kind`` of unit ``key`` (``self.submit`` with a call link label unique to it)."""
        raise NotImplementedError

    def job_succeeded(self, kind, key, node):
        """Keep the results of a job that finished OK; may queue the unit's next job (``fan_out_follow``)."""
        raise NotImplementedError

    def too_many_failures(self, failed, attempted):
        """Attach what there is and return the exit code of a fan-out stopped for too many failed units."""
        raise NotImplementedError

    # ------------------------------------------------------------------ internals
    def _fan_out_collect(self, state):
        """Collect the running jobs that ended, in launch order: results, or a report and ``ctx.failed``."""
        still_running = []
        for kind, key, pk in state["running"]:
            node = orm.load_node(pk)
            if not node.is_terminated:
                still_running.append([kind, key, pk])
            elif node.is_finished_ok:
                self.job_succeeded(kind, key, node)
                if not any(queued_key == key for _, queued_key in state["queue"]):
                    state["ended"] += 1
            else:
                self.ctx.failed[str(key)] = node.pk
                state["ended"] += 1
                status = (f"exit {node.exit_status}: {node.exit_message}" if node.is_finished
                          else node.process_state.value)
                self.report(f"{kind} {node.process_label}<{node.pk}> for {self.FAN_OUT_UNIT} {key} failed "
                            f"({status}); {self.FAN_OUT_UNIT} left out")
        state["running"] = still_running

    def _over_the_limit(self, state):
        """More units failed than ``max_failed_fraction`` of all units queued: the fan-out cannot end within it."""
        return len(self.ctx.failed) > state["max_failed_fraction"] * state["units"]

    def _fan_out_launch(self, state):
        """Launch queued jobs until ``max_concurrent`` run."""
        launched = []
        while state["queue"] and len(state["running"]) < state["max_concurrent"]:
            kind, key = state["queue"].pop(0)
            state["follow_ups"] = max(state["follow_ups"] - 1, 0)
            try:
                node = self.launch_job(kind, key)
            except ValueError as error:  # its inputs were refused (plumpy's port validation): no node exists
                self.ctx.failed[str(key)] = None
                state["ended"] += 1
                self.report(f"{kind} for {self.FAN_OUT_UNIT} {key} refused at launch ({error}); "
                            f"{self.FAN_OUT_UNIT} left out")
                if self._over_the_limit(state):
                    break  # the next step stops the fan-out
                continue
            state["running"].append([kind, key, node.pk])
            launched.append(f"{kind} {key}")
        if launched:
            self.report(f"launched {', '.join(launched)} ({len(state['queue'])} queued, "
                        f"{len(state['running'])} running)")

    # ------------------------------------------------------------------ waiting for any child (aiida-core internals)
    @property
    def _fan_out_watched(self):
        """PKs of the children with a callback registered by this process instance that has not fired yet. Not
        persisted: a WorkChain reloaded from its checkpoint is a new instance, with no callback registered."""
        return self.__dict__.setdefault("_fan_out_watched_pks", set())

    def _action_awaitables(self):
        """``WorkChain._action_awaitables`` (register a callback with the runner for each awaitable), only for
        the children without a callback from this instance yet: a child awaited again by a later step (a
        running job of the window) keeps its first callback."""
        everything = self._awaitables
        self._awaitables = [awaitable for awaitable in everything if awaitable.pk not in self._fan_out_watched]
        try:
            super()._action_awaitables()
            self._fan_out_watched.update(awaitable.pk for awaitable in self._awaitables)
        finally:
            self._awaitables = everything

    def _on_awaitable_finished(self, awaitable):
        """A child ended: resolve the awaitable now awaited for it (the callback may have been registered for an
        earlier step's), or nothing if none is; after a fan-out child, resume at once (not when all ended)."""
        from plumpy import ProcessState

        self._fan_out_watched.discard(awaitable.pk)
        current = next((waiting for waiting in self._awaitables if waiting.pk == awaitable.pk), None)
        if current is None:
            return  # no longer awaited: its step reads the job's state from the database
        super()._on_awaitable_finished(current)  # resolves it; resumes when it was the last one
        if current.key.startswith(f"{WAKE}.") and self._awaitables and self.state == ProcessState.WAITING:
            self.resume()
