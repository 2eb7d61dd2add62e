"""One table format for every benchmark: our figure beside the peer's, as a ratio.

Each benchmark module exposes ``run(quick: bool) -> list[Row]``; ``bench/__main__``
collects the rows of every module and prints a single table.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Row:
    """One measured figure, with the peer figure from the same run where there is one.

    ``higher_is_better`` says which way the ratio should point; ``target`` is the
    ratio (or, when there is no peer, the absolute figure) the issue asks for.
    """

    bench: str
    metric: str
    ours: float
    unit: str
    peer: float | None = None
    peer_name: str = ""
    target: float | None = None
    higher_is_better: bool = True
    target_is_ratio: bool = False
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.peer is None or self.peer == 0:
            return None
        return self.ours / self.peer

    @property
    def met(self) -> bool | None:
        if self.target is None:
            return None
        value = self.ratio if self.target_is_ratio else self.ours
        if value is None:
            return None
        return value >= self.target if self.higher_is_better else value <= self.target


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def render(rows: list[Row]) -> str:
    """Render rows as a fixed-width text table."""
    header = ["bench", "metric", "ours", "unit", "peer", "peer is", "ratio", "target", "met"]
    body = []
    for row in rows:
        if row.target is None:
            target = "-"
        else:
            sign = ">=" if row.higher_is_better else "<="
            suffix = "x" if row.target_is_ratio else ""
            target = f"{sign} {_fmt(row.target)}{suffix}"
        met = {None: "", True: "yes", False: "NO"}[row.met]
        ratio = "-" if row.ratio is None else f"{row.ratio:.2f}x"
        body.append(
            [
                row.bench,
                row.metric,
                _fmt(row.ours),
                row.unit,
                _fmt(row.peer),
                row.peer_name or "-",
                ratio,
                target,
                met,
            ]
        )
    widths = [max(len(str(r[i])) for r in [header, *body]) for i in range(len(header))]
    lines = [
        "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in [header, *body]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    notes = [f"* {row.bench}/{row.metric}: {row.note}" for row in rows if row.note]
    return "\n".join([*lines, *(["", *notes] if notes else [])])


def peak_rss_mb() -> float:
    """Returns this process's peak resident set size in MB.

    Reads VmHWM from /proc (Linux): getrusage's ru_maxrss survives execve, so a
    child started by a large parent (``python -m bench`` after the hashing
    benchmark) would report the parent's peak instead of its own.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
