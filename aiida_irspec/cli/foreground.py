"""A campaign run in the foreground of a command (``campaign run``, ``demo``): its progress, and a clean stop.

Progress. The processes' reports (AiiDA's REPORT log records) of the campaign and its stages are printed as
``HH:MM:SS [pk|Process|step]: message``; those of the single jobs (launched, restarted, finished) only with
``-v info`` or ``-v debug``; failures always. On a terminal a status line below them says the stage, the jobs
done, failed and running out of the planned ones, the time in the stage and an estimate of what is left; without
a terminal (a log file) that line is printed whenever its counts change. The counts are one database query
(:func:`aiida_irspec.cli.campaign.campaign_counts`) every couple of seconds from the event loop; a thread redraws
the line every second, so the clock also moves while a long calculation function (a fit, a selection) holds the
loop.

Stopping. Ctrl-C (SIGINT) or SIGTERM kills the campaign and every process under it, as ``verdi process kill``
would through a daemon (a profile without a broker has no controller, so aiida-core's own handler only kills the
top process and leaves its jobs running): the WorkChains first, top down, so that none reacts to a job ending,
then every CalcJob, whose kill cancels its scheduler job (the direct scheduler kills the job's whole process
tree: no engine process survives). Every process ends ``killed`` with the status "interrupted by SIGINT during
the foreground run"; nothing computed is lost (finished jobs keep their outputs and stay in the cache). A second
signal, or a kill that has not ended within :data:`KILL_TIMEOUT` seconds, stops at once: the scheduler jobs of
the CalcJobs still alive are cancelled directly and their process nodes marked killed. Once the run has stopped,
both signals are ignored: the command is exiting with 128 + the number of the first one.
"""

import asyncio
import functools
import gc
import logging
import signal
import sys
import threading
import time

import click

#: Seconds to wait for the processes' own kill (scheduler jobs cancelled) before stopping at once.
KILL_TIMEOUT = 120
#: Seconds between two database queries of the counts, and between two redraws of the status line.
POLL_SECONDS, REDRAW_SECONDS = 2.0, 1.0
#: Processes whose reports are printed at the default verbosity (the others only with -v info / debug), but for
#: their "launched ..." lines, which the status line counts.
STAGE_PROCESSES = ("CampaignWorkChain", "ActiveLearningWorkChain", "IRSpectrumWorkChain", "SelectWorkChain")
#: Words of a report line that is always printed (a job failed or was restarted).
ALERT_WORDS = ("failed", "crashed", "ran out", "stopping", "not converged", "giving up", "excepted", "killed")


def interrupted_status(signal_name):
    """The process status of every process of an interrupted foreground run."""
    return f"interrupted by {signal_name} during the foreground run (`aiida-irspec campaign run`)"


def _duration(seconds):
    seconds = int(round(seconds))
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m" if seconds >= 3600 else (
        f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s")


class Progress(logging.Handler):
    """The report lines and the status line of a foreground campaign (see the module docstring).

    ``show_jobs``: print the reports of every process (``-v info``/``debug``); ``quiet``: neither reports nor the
    status line (``-v warning`` and above). The status line goes to stderr, the reports to stdout.
    """

    def __init__(self, show_jobs=False, quiet=False, stream=None):
        super().__init__(level=logging.INFO if show_jobs else 23)
        self.show_jobs, self.quiet = show_jobs, quiet
        self.out = stream or click.get_text_stream("stdout")
        self.err = click.get_text_stream("stderr")
        self.tty = self.err.isatty()
        self.lock = threading.RLock()
        self.counts = None  # the last counts of campaign_counts
        self.printed = None  # what the last status line printed said (not on a terminal)
        self.shown = 0  # width of the status line on the terminal
        self.stage_started = {}  # stage -> monotonic time it was first seen
        self.activity = None  # (text, monotonic start) of a step that holds the loop, from the reports
        self.took = {}  # selection strategy -> seconds the last selection of it took
        self.started = time.monotonic()
        self.stopped = threading.Event()
        self.thread = None

    # ------------------------------------------------------------------ report lines
    def emit(self, record):
        message = record.getMessage()
        process = message.split("|", 2)[1] if message.startswith("[") and message.count("|") >= 2 else ""
        self._note_activity(process, message)
        if self.quiet:
            return
        text = message.split("]: ", 1)[-1]
        if "Traceback (most recent call last)" in text:  # a process excepted: its last line; the rest is stored
            pk = message[1:].split("|", 1)[0]
            last = [line.strip() for line in text.strip().splitlines() if line.strip()][-1]
            message = f"{message.split(']: ', 1)[0]}]: excepted: {last} (traceback: `verdi process report {pk}`)"
            text = "excepted"
        if not (self.show_jobs or (process in STAGE_PROCESSES and not text.startswith("launched "))
                or record.levelno >= logging.WARNING or any(word in text for word in ALERT_WORDS)):
            return
        with self.lock:
            self._clear()
            self.out.write(f"{time.strftime('%H:%M:%S', time.localtime(record.created))} {message}\n")
            self.out.flush()
            self._draw()

    def _note_activity(self, process, message):
        """A selection or a fit holds the event loop for a while: remember it (and how long the last one of its kind
        took) for the status line."""
        text = message.split("]: ", 1)[-1]
        if (process == "SelectWorkChain" and text.startswith("select ")) or (
                process == "ActiveLearningWorkChain" and "fitting the model" in text):
            self.activity = (text, time.monotonic())
        elif process in ("SelectWorkChain", "ActiveLearningWorkChain", "CampaignWorkChain", "IRSpectrumWorkChain"):
            if self.activity is not None:
                self.took[self._kind(self.activity[0])] = time.monotonic() - self.activity[1]
            self.activity = None

    @staticmethod
    def _kind(text):
        """'select 4 by uncertainty from 601 frames' -> 'uncertainty'; 'iteration 2: fitting ...' -> 'fit'."""
        return "fit" if "fitting the model" in text else text.split(" by ", 1)[-1].split()[0]

    # ------------------------------------------------------------------ status line
    def update(self, counts):
        """New counts (from the event loop)."""
        with self.lock:
            previous = self.counts["stage"] if self.counts else None
            self.counts = counts
            self.stage_started.setdefault(counts["stage"], time.monotonic())
            if self.tty:
                self._draw()
                return
            if self.quiet:
                return
            # a log: a line when a job ends, a stage or a step starts (not when one is launched)
            if previous not in (None, counts["stage"]):
                self.err.write(f"progress: {self.line(previous)}\n")  # the stage that ended, with its last counts
            jobs = counts["jobs"].get(counts["stage"])
            key = (counts["stage"], jobs[1:3] if jobs else None, self.activity and self.activity[0])
            if key != self.printed:
                self.printed = key
                self.err.write(f"progress: {self.line()}\n")
            self.err.flush()

    def line(self, stage=None):
        """The status line: stage (default: the current one), jobs done/failed/running of the planned ones, time in
        the stage, estimate."""
        counts = self.counts
        if counts is None:
            return "starting"
        now = time.monotonic()
        stage = stage or counts["stage"]
        number = list(counts["jobs"]).index(stage) + 1 if stage in counts["jobs"] else counts["stage_number"]
        parts = [f"stage {number}/3 {stage}"]
        jobs = counts["jobs"].get(stage)
        if jobs is not None:
            kind, done, failed, running, planned = jobs
            parts.append(f"{kind} {done + failed}/{planned} done ({failed} failed, {running} running)")
        if self.activity is not None:
            text, since = self.activity
            last = self.took.get(self._kind(text))
            text += f" ({_duration(now - since)}" + (f", the last one took {_duration(last)})" if last else ")")
            parts.append(text)
        in_stage = now - self.stage_started.get(stage, now)
        parts.append(f"{_duration(in_stage)} in the stage, {_duration(now - self.started)} in all")
        if jobs is not None and jobs[1] + jobs[2] > 0 and jobs[4] > jobs[1] + jobs[2]:
            ended = jobs[1] + jobs[2]  # the stage's time per job so far, for the jobs left (learning: its budget)
            left = in_stage / ended * (jobs[4] - ended)
            parts.append(("at most " if stage == "learning" else "about ") + f"{_duration(left)} left")
        return " | ".join(parts)

    def _clear(self):
        if self.tty and self.shown:
            self.err.write("\r" + " " * self.shown + "\r")
            self.err.flush()
            self.shown = 0

    def _draw(self):
        if not self.tty or self.quiet:
            return
        import shutil

        text = self.line()[: shutil.get_terminal_size().columns - 1]
        self.err.write("\r" + text.ljust(self.shown))
        self.err.flush()
        self.shown = len(text)

    def _redraw_forever(self):
        while not self.stopped.wait(REDRAW_SECONDS):
            with self.lock:
                self._draw()

    # ------------------------------------------------------------------ set up and tear down
    def __enter__(self):
        from aiida.cmdline.utils.log import CliHandler

        aiida_logger = logging.getLogger("aiida")
        self.handlers = [handler for handler in aiida_logger.handlers  # the terminal's, not the database's or a file's
                         if isinstance(handler, CliHandler) or type(handler) is logging.StreamHandler]
        for handler in self.handlers:  # the processes' reports reach the terminal through this handler instead
            aiida_logger.removeHandler(handler)
        aiida_logger.addHandler(self)
        if self.tty and not self.quiet:
            self.thread = threading.Thread(target=self._redraw_forever, name="irspec-progress", daemon=True)
            self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stopped.set()
        if self.thread is not None:
            self.thread.join()
        with self.lock:
            self._clear()
        aiida_logger = logging.getLogger("aiida")
        aiida_logger.removeHandler(self)
        for handler in self.handlers:
            aiida_logger.addHandler(handler)

    def note(self, text):
        """A line of the command itself (stopping, ...), printed like a report."""
        with self.lock:
            self._clear()
            self.err.write(text + "\n")
            self.err.flush()
            self._draw()


def _interrupt():
    """A loop callback: the second signal's KeyboardInterrupt, raised between two callbacks of the event loop."""
    raise KeyboardInterrupt


def _quiet_interrupt(hook, unraisable):
    """``sys.unraisablehook`` while a campaign runs: the KeyboardInterrupt of a second Ctrl-C that lands in a
    finalizer or a garbage-collection callback is expected (the run stops at once), not a traceback to print."""
    if unraisable.exc_type is not None and issubclass(unraisable.exc_type, KeyboardInterrupt):
        return
    hook(unraisable)


class ForegroundRun:
    """Run a process builder in this interpreter's runner until it ends, with :class:`Progress` and a clean
    stop on SIGINT / SIGTERM (see the module docstring). :meth:`run` returns the process node; ``signal_name``
    is the signal that stopped it (None if none did)."""

    def __init__(self, builder, progress=None, counts=None):
        self.builder = builder
        self.progress = progress
        self.counts = counts  # node -> dict for Progress.update, or None
        self.instances = {}  # pk -> process instance, in creation order
        self.signal_name = None
        self.killing = False  # the processes are being killed (after the first signal)

    # ------------------------------------------------------------------ running
    def run(self):
        from aiida.engine.utils import loop_scope
        from aiida.manage import get_manager

        manager = get_manager()
        own_runner = manager._runner is None  # noqa: SLF001 - aiida-core has no public "is there a runner"
        # A runner of our own needs no broker: the campaign runs in this interpreter and the signal handlers below
        # kill its processes directly (a ZeroMQ profile's broker would otherwise have to be started first).
        runner = manager.get_runner(communicator=None) if own_runner else manager.get_runner()
        self.runner = runner
        original = runner.instantiate_process

        def instantiate_and_record(process, **inputs):  # the in-memory processes, to kill them on a signal
            instance = original(process, **inputs)
            self.instances[instance.node.pk] = instance
            return instance

        runner.instantiate_process = instantiate_and_record
        handlers = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
        unraisable = sys.unraisablehook
        sys.unraisablehook = functools.partial(_quiet_interrupt, unraisable)
        loop_handler = runner.loop.get_exception_handler()
        runner.loop.set_exception_handler(self._on_loop_exception)
        try:
            with loop_scope(runner.loop):
                self.top = instantiate_and_record(self.builder)
                for number in handlers:
                    signal.signal(number, self._on_signal)
                self._poll()
                try:
                    self.top.execute()
                except KeyboardInterrupt:
                    raise
                except Exception:  # plumpy re-raises the exception of an excepted process, KilledError of a killed
                    if not self.top.node.is_terminated and self.signal_name is None:  # one: its node says it all
                        raise
                if self.signal_name is not None:
                    self._finish_kill()
                else:
                    self._update_progress()  # the last counts: the poll may not have run since the last job ended
        except KeyboardInterrupt:  # a second signal: stop at once
            self.signal_name = self.signal_name or "SIGINT"
            self._stop_at_once()
        finally:
            runner.instantiate_process = original
            gc.collect()  # the killed processes' tasks report their exceptions now, to the handlers above
            runner.loop.set_exception_handler(loop_handler)
            for number, handler in handlers.items():  # after a signal, a late one finds the command exiting: ignored
                signal.signal(number, handler if self.signal_name is None else signal.SIG_IGN)
            sys.unraisablehook = unraisable
            if own_runner:  # the next process of this interpreter (a submit) gets the profile's own runner
                manager._runner = None  # noqa: SLF001
        return self.top.node

    def _on_loop_exception(self, loop, context):
        """The event loop's handler: a task that ended by our kill (or by the second signal's KeyboardInterrupt) is
        expected: its process says it was killed. Anything else goes to the default handler."""
        from plumpy.process_states import KillInterruption

        if self.signal_name is not None and (
                isinstance(context.get("exception"), (KillInterruption, KeyboardInterrupt))
                or str(context.get("message", "")).startswith("Task exception was never retrieved")):
            return  # after a signal: a task of a process that the kill ended mid-step (its node says killed)
        loop.default_exception_handler(context)

    def _poll(self):
        """Counts for the progress line, every POLL_SECONDS from the event loop (the database is read only here)."""
        if not self.top.has_terminated() and self._update_progress():
            self.runner.loop.call_later(POLL_SECONDS, self._poll)

    def _update_progress(self):
        """Give the progress line the campaign's counts now; False (and a note) when they cannot be read."""
        if self.progress is None or self.counts is None:
            return False
        try:
            self.progress.update(self.counts(self.top.node))
        except Exception as error:  # a report must never stop the campaign
            self.progress.note(f"(progress line unavailable: {error})")
            return False
        return True

    # ------------------------------------------------------------------ stopping
    def _on_signal(self, number, frame):
        name = signal.Signals(number).name
        if self.signal_name is not None:  # the second one: stop at once
            if self.killing:  # the kills write to the database: interrupt between two of the loop's callbacks
                self.runner.loop.call_soon_threadsafe(_interrupt)
                return
            raise KeyboardInterrupt  # the loop is held by a step: interrupt it where it is
        self.signal_name = name
        self._say(f"{name}: stopping the campaign and every job under it (send it again to stop at once) ...")
        self.runner.loop.call_soon_threadsafe(self._kill_workflows)

    def _say(self, text):
        if self.progress is not None:
            self.progress.note(text)
        else:
            click.echo(text, err=True)

    def _alive(self, kind=None):
        from aiida.orm import CalcJobNode

        return [instance for instance in self.instances.values() if not instance.has_terminated()
                and (kind is None or isinstance(instance.node, CalcJobNode) == (kind == "calcjob"))]

    def _kill_workflows(self):
        """In the event loop: kill the WorkChains top down (so that none reacts to a job ending), then cancel the
        scheduler job of every CalcJob and kill it (without aiida-core's retries of a cancellation, which wait up
        to minutes for a job that has already ended)."""
        from aiida_irspec.cli.campaign import cancel_scheduler_job

        self.killing = True
        message = interrupted_status(self.signal_name)
        for instance in self._alive("workflow"):
            instance.kill(msg_text=message)
        for instance in self._alive("calcjob"):
            problem = cancel_scheduler_job(instance.node)
            if problem:
                self._say(problem)
            instance.kill(msg_text=message, force_kill=True)

    def _finish_kill(self):
        """After the top process was killed: let the loop finish the kills (at most KILL_TIMEOUT s), then make sure
        that nothing is left running."""
        deadline = time.monotonic() + KILL_TIMEOUT

        async def wait():
            while self._alive() and time.monotonic() < deadline:
                await asyncio.sleep(0.2)

        self.runner.loop.run_until_complete(wait())
        self._stop_at_once()

    def _stop_at_once(self):
        """Cancel the scheduler job of every CalcJob still alive and mark every process still alive killed."""
        from aiida_irspec.cli.campaign import stop_processes

        leftover = stop_processes(self.top.node, interrupted_status(self.signal_name))
        if leftover:
            self._say(f"stopped {len(leftover)} process(es) at once: {', '.join(leftover)}")


def exit_code_of_signal(name):
    """The exit code of a command stopped by a signal (128 + its number: 130 for SIGINT, 143 for SIGTERM)."""
    return 128 + signal.Signals[name].value


def progress_for_cli():
    """A :class:`Progress` that follows the global ``-v/--verbosity``."""
    from aiida_irspec.cli.utils import global_option

    verbosity = (global_option("verbosity") or "report").lower()
    return Progress(show_jobs=verbosity in ("info", "debug", "notset"),
                    quiet=verbosity in ("warning", "error", "critical"))

