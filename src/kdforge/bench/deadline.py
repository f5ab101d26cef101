"""A sitting with an end (a job scheduler's time limit, a machine lent for some hours): `--finish-by` starts only
the runs that can finish before it, so that the end of the sitting never cuts off a run that was bound not to
finish (on a machine that does not come back, its folder is lost with it). A run is timed by its row's slowest
recorded run; for a row with none, by the slowest pace per epoch of its cell (rows `cell/method` share a student or
a setting, whose size sets the pace) or else of the suite, scaled to the share of the classes the row trains on; a
suite with no recorded run has nothing to time it by, and its runs start. A run under way is timed by the epochs it
has left."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from kdforge.bench.suites import cell_of
from kdforge.errors import SittingOver, UserError


def parse_finish_by(text: str, now: datetime | None = None) -> datetime:
    """'HH:MM' (local time: the next time the clock reads it, so that 02:10 said at 23:45 is tomorrow's) or an ISO
    date-time, as a naive local time. A campaign of many commands resolves HH:MM once, at its start (`finish_by.sh`):
    each command reading it anew would, once the moment has passed, take it for the next day's."""
    now = now or datetime.now()
    try:
        if len(text) <= 5 and ":" in text:
            hour, minute = (int(part) for part in text.split(":"))
            moment = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
            return moment if moment > now else moment + timedelta(days=1)
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise UserError(f"--finish-by takes HH:MM or an ISO date-time such as 2026-12-02T14:30, "
                        f"got {text!r}") from None
    return moment.astimezone().replace(tzinfo=None) if moment.tzinfo else moment


def run_seconds(recorded: list[dict], row: str, planned: int, trained: int = 0,
                words: tuple[str, str] = ("row", "suite"),
                share: Callable[[str], float] | None = None) -> tuple[float, str] | None:
    """Seconds a run of `row` still needs with `trained` of its `planned` epochs done, and what timed it (`words`:
    what a row and the whole are called there, a sweep's cell and the sweep; `share`: the share of the dataset's
    classes a row trains on, which scales the pace of the suite's other rows to this one's)."""
    for basis, timed_by in ((f"the {words[0]}'s slowest recorded run", [r for r in recorded if r["method"] == row]),
                            (f"the slowest pace per epoch of {cell_of(row)}", cell_rows(recorded, row)),
                            (f"the {words[1]}'s slowest pace per epoch", recorded)):
        if timed_by:
            break
    else:
        return None
    scale = (lambda r: share(row) / share(r["method"])) if share else (lambda r: 1.0)
    per_epoch = max(float(r["wall_seconds"]) / int(r["epochs"]) * scale(r) for r in timed_by)
    return per_epoch * max(planned - trained, 0), basis


def cell_rows(recorded: list[dict], row: str) -> list[dict]:
    """The recorded runs of the rows that share `row`'s cell; none for a row without a cell."""
    cell = cell_of(row)
    return [r for r in recorded if cell and r["method"].startswith(f"{cell}/")]


def too_late(estimate: tuple[float, str] | None, finish_by: datetime, now: datetime | None = None) -> str | None:
    """Why a run with this estimate must not start (None: it may)."""
    if estimate is None:
        return None
    seconds, basis = estimate
    left = (finish_by - (now or datetime.now())).total_seconds()
    if seconds <= left:
        return None
    return (f"not started: it needs about {seconds / 60:.0f} min ({basis}) and the sitting ends at "
            f"{finish_by:%H:%M} ({max(left, 0) / 60:.0f} min left)")


class Sitting:
    """A sitting's end (None: it has none) and the runs it left unstarted: ask `holds_back` before each run and
    `close` after the last, which raises SittingOver naming them."""

    def __init__(self, finish_by: datetime | None, echo=print):
        self.finish_by, self.echo, self.not_started = finish_by, echo, []

    def holds_back(self, label: str, why_late: Callable[[datetime], str | None], counter: str = "") -> bool:
        """Whether the run `label` waits for another sitting; `why_late(finish_by)` says why (None: it may start),
        and is asked only when the sitting has an end. The reason is said after `counter` and the label."""
        late = why_late(self.finish_by) if self.finish_by is not None else None
        if late:
            self.echo(f"{counter}{label}: {late}")
            self.not_started.append(label)
        return bool(late)

    def close(self) -> None:
        if self.not_started:
            raise SittingOver(f"{len(self.not_started)} run(s) not started, as they could not finish by "
                              f"{self.finish_by:%H:%M} ({', '.join(self.not_started)}); the same command run later "
                              "continues")
