"""The README's dashboard picture, from a real run: runs hack/demo (a rehearsal, then the
upgrade, on the local environment), scrapes the operator's real /metrics every half second
while it runs, and plots what the Grafana dashboard's panels (charts/cutover/dashboards/
cutover.json) would show of those samples, computed the way their PromQL computes it, into
docs/img/dashboard.png. Not run by hack/test; run it again after changing the metrics.

    ~/.cache/cutover/venv/bin/python hack/dashboard-picture.py            # demo + scrape + plot
    ~/.cache/cutover/venv/bin/python hack/dashboard-picture.py --from F   # plot saved scrapes

Needs matplotlib in the env's venv (hack/dev-install installs it) and what hack/demo needs;
CUTOVER_ENV_DIR and CARGO_TARGET_DIR pass through to hack/demo. The raw scrapes are kept
(--scrapes, JSON lines: {"t": unix seconds, "text": the exposition}) to re-render without a run.
"""

import argparse
import glob
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\S+)?$")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


# ------------------------------------------------------------------ scraping ----


def run_demo_and_scrape(interval, documents, scrapes_path, demo_log):
    env_dir = Path(os.environ.get("CUTOVER_ENV_DIR", REPO / ".dev-env"))
    logs = env_dir / "logs"
    before = set(glob.glob(str(logs / "demo-*-operator.log")))
    print(f"running hack/demo --cleanup, {documents} content items and as many events (its output: {demo_log})", file=sys.stderr)
    with open(demo_log, "w") as out, open(scrapes_path, "w") as scrapes:
        demo = subprocess.Popen(
            [str(REPO / "hack/demo"), "--cleanup"],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env={**os.environ, "CUTOVER_DEMO_DOCUMENTS": str(documents)},
        )
        addr, n = None, 0
        while demo.poll() is None:
            if addr is None:
                for log in set(glob.glob(str(logs / "demo-*-operator.log"))) - before:
                    m = re.search(r"serving /healthz.*?addr=(\S+)", Path(log).read_text(errors="replace"))
                    if m:
                        addr = m.group(1)
                        print(f"scraping http://{addr}/metrics every {interval}s", file=sys.stderr)
            else:
                try:
                    with urllib.request.urlopen(f"http://{addr}/metrics", timeout=2) as r:
                        text = r.read().decode()
                    scrapes.write(json.dumps({"t": time.time(), "text": text}) + "\n")
                    n += 1
                except OSError:
                    pass  # not up yet, or stopped at the end
            time.sleep(interval)
    if demo.returncode != 0:
        sys.exit(f"hack/demo failed (exit {demo.returncode}); see {demo_log}")
    if n == 0:
        sys.exit(f"no scrape of the operator's /metrics succeeded; see {demo_log}")
    print(f"{n} scrapes in {scrapes_path}", file=sys.stderr)


def parse(text):
    """[(name, {label: value}, float)] of one exposition."""
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        if m:
            labels = {k: v.replace('\\"', '"').replace("\\\\", "\\") for k, v in LABEL.findall(m.group(2) or "")}
            out.append((m.group(1), labels, float(m.group(3))))
    return out


def load(path):
    rows = [json.loads(line) for line in open(path)]
    t0 = rows[0]["t"]
    return [(r["t"] - t0, parse(r["text"])) for r in rows]


# ---------------------------------------------------------- PromQL, by hand ----


def series(scrapes, name, key, where=lambda labels: True, agg=sum):
    """{key(labels): ([t], [value])}: `agg by (key) (name{where})` at every scrape."""
    out = defaultdict(lambda: ([], []))
    for t, samples in scrapes:
        groups = defaultdict(list)
        for n, labels, v in samples:
            if n == name and where(labels):
                groups[key(labels)].append(v)
        for k, vs in groups.items():
            out[k][0].append(t)
            out[k][1].append(agg(vs))
    return dict(out)


def last(scrapes, name, key, where=lambda labels: True):
    """{key(labels): the last value seen} (plans vanish from the gauges once deleted)."""
    return {k: vs[-1] for k, (_, vs) in series(scrapes, name, key, where).items()}


def rate(ts, vs, window):
    """rate() over a trailing window, counter resets ignored (one operator process)."""
    out_t, out_v, j = [], [], 0
    for i, t in enumerate(ts):
        while ts[j] < t - window:
            j += 1
        if i > j:
            out_t.append(t)
            out_v.append((vs[i] - vs[j]) / (t - ts[j]))
    return out_t, out_v


def plan_key(labels):
    return f"{labels.get('namespace', '').removeprefix('cutover-demo-')}/{labels.get('plan', '')}"


def plan_name(labels):
    return labels.get("plan", "")


# ------------------------------------------------------------------ plotting ----


def render(scrapes, out_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update(
        {
            "figure.facecolor": "#111217",
            "axes.facecolor": "#181b1f",
            "axes.edgecolor": "#2c3235",
            "axes.labelcolor": "#ccccdc",
            "text.color": "#ccccdc",
            "xtick.color": "#8e8e9e",
            "ytick.color": "#8e8e9e",
            "grid.color": "#2c3235",
            "axes.grid": True,
            "axes.axisbelow": True,
            "font.size": 8,
            "axes.titlesize": 9,
            "axes.titleweight": "bold",
            "legend.fontsize": 7,
            "legend.frameon": False,
        }
    )
    palette = ["#73bf69", "#f2cc0c", "#8ab8ff", "#ff780a", "#f2495c", "#5794f2", "#b877d9", "#fade2a"]
    import matplotlib.patches  # noqa: F401 (matplotlib.patches.Patch below)
    import matplotlib.ticker  # noqa: F401

    fig, axes = plt.subplots(3, 3, figsize=(15, 11))
    end = scrapes[-1][0]
    fig.suptitle(
        f"cutover dashboard panels, from the operator's /metrics scraped every "
        f"{end / max(len(scrapes) - 1, 1):.1f}s during hack/demo (rehearsal, then upgrade; {end:.0f}s)",
        color="#ccccdc",
        fontsize=11,
    )
    timeline = lambda ax: (ax.set_xlabel("seconds since the operator started"), ax.set_xlim(0, end))

    # One colour per phase in every panel, phases in the order the plans went through them.
    phase_series = series(scrapes, "cutover_plan_phase", lambda l: (plan_name(l), l["phase"]))
    first_seen = {}
    for (plan, ph), (ts, vs) in phase_series.items():
        for t, v in zip(ts, vs):
            if v == 1:
                first_seen[ph] = min(first_seen.get(ph, t), t)
                break
    all_phases = {l["phase"] for _, samples in scrapes for n, l, _ in samples if "phase" in l}
    phases = sorted(all_phases, key=lambda ph: (first_seen.get(ph, float("inf")), ph))
    tab = plt.get_cmap("tab20").colors
    colors = {ph: tab[(2 * i) % 20 + (i // 10) % 2] for i, ph in enumerate(phases)}
    fig.legend(
        handles=[matplotlib.patches.Patch(color=colors[ph], label=ph) for ph in phases if ph in first_seen],
        loc="upper center", ncol=13, bbox_to_anchor=(0.5, 0.962), fontsize=8,
    )

    # Plans by phase: sum by (phase) (cutover_plans), stacked
    ax = axes[0][0]
    ax.set_title("Plans by phase")
    by_phase = series(scrapes, "cutover_plans", lambda l: l["phase"])
    times = [t for t, _ in scrapes]
    stack = []
    for ph in phases:
        ts, vs = by_phase.get(ph, ([], []))
        at = dict(zip(ts, vs))
        stack.append([at.get(t, 0) for t in times])
    ax.stackplot(times, stack, colors=[colors[ph] for ph in phases], step="post")
    ax.set_ylabel("plans")
    ax.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    timeline(ax)

    # Current phase per plan: cutover_plan_phase == 1, as a timeline
    ax = axes[0][1]
    ax.set_title("Current phase per plan")
    plans = sorted({p for p, _ in phase_series}, reverse=True)
    for y, plan in enumerate(plans):
        for ph in phases:
            ts, vs = phase_series.get((plan, ph), ([], []))
            start = None
            for t, v in zip(ts + [None], vs + [0]):
                if v == 1 and start is None:
                    start = t
                elif v != 1 and start is not None:
                    stop = t if t is not None else ts[-1]
                    ax.broken_barh([(start, max(stop - start, 0.3))], (y - 0.35, 0.7), color=colors[ph])
                    start = None
    ax.set_yticks(range(len(plans)), plans)
    ax.grid(axis="y", visible=False)
    timeline(ax)

    # Read-only now vs prediction (and the 2x alert threshold)
    ax = axes[0][2]
    ax.set_title("Read-only now (solid) vs predicted (dashed), alert at 2x (dotted)")
    ro = series(scrapes, "cutover_plan_read_only_seconds", plan_name)
    pred = series(scrapes, "cutover_plan_predicted_read_only_seconds", plan_name)
    top = 0
    for i, plan in enumerate(sorted(set(ro) | set(pred))):
        c = palette[i % len(palette)]
        if plan in ro:
            ax.plot(*ro[plan], color=c, label=plan)
            top = max(top, *ro[plan][1])
        if plan in pred:
            ts, vs = pred[plan]
            ax.plot(ts, vs, color=c, linestyle="--")
            ax.plot(ts, [2 * v for v in vs], color=c, linestyle=":", alpha=0.6)
            top = max(top, *(2 * v for v in vs))
    ax.set_ylim(0, top * 1.3 or 1)
    ax.set_ylabel("seconds")
    ax.legend(loc="upper left")
    timeline(ax)

    # Measured window vs prediction
    ax = axes[1][0]
    ax.set_title("Measured read-only window vs prediction")
    window = last(scrapes, "cutover_plan_read_only_window_seconds", plan_name)
    predicted = last(scrapes, "cutover_plan_predicted_read_only_seconds", plan_name)
    names = sorted(set(window) | set(predicted))
    xs = range(len(names))
    ax.bar([x - 0.2 for x in xs], [window.get(n, 0) for n in names], 0.4, color=palette[0], label="measured")
    ax.bar([x + 0.2 for x in xs], [predicted.get(n, 0) for n in names], 0.4, color=palette[2], label="predicted")
    for x, n in zip(xs, names):
        for dx, v in ((-0.2, window.get(n)), (0.2, predicted.get(n))):
            if v is not None:
                ax.text(x + dx, v, f"{v:.1f}s", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(list(xs), names)
    ax.set_ylabel("seconds")
    ax.set_ylim(0, max([*window.values(), *predicted.values(), 1]) * 1.3)
    ax.legend(loc="upper right")

    # Phase duration (mean over the range): increase(sum) / increase(count), from a fresh process
    ax = axes[1][1]
    ax.set_title("Phase duration (mean over the run)")
    sums = last(scrapes, "cutover_phase_duration_seconds_sum", lambda l: l["phase"])
    counts = last(scrapes, "cutover_phase_duration_seconds_count", lambda l: l["phase"])
    means = {p: sums[p] / counts[p] for p in sums if counts.get(p)}
    order = sorted(means, key=means.get, reverse=True)
    ax.barh(order, [means[p] for p in order], color=[colors.get(p, palette[2]) for p in order])
    for y, p in enumerate(order):
        ax.text(means[p], y, f" {means[p]:.1f}s (n={counts[p]:.0f})", va="center", fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("seconds")
    ax.grid(axis="y", visible=False)

    # Copy throughput and progress
    ax = axes[1][2]
    ax.set_title("Copy throughput and progress")
    thr = series(scrapes, "cutover_plan_copy_documents_per_second", plan_name)
    done = series(scrapes, "cutover_plan_copy_documents_done", plan_name)
    total = last(scrapes, "cutover_plan_copy_documents_total", plan_name)
    for i, (plan, (ts, vs)) in enumerate(sorted(thr.items())):
        ax.plot(ts, vs, color=palette[i % len(palette)], label=f"{plan} documents/s")
    ax.set_ylabel("documents per second")
    ax2 = ax.twinx()
    for i, (plan, (ts, vs)) in enumerate(sorted(done.items())):
        if total.get(plan):
            ax2.plot(ts, [100 * v / total[plan] for v in vs], color=palette[i % len(palette)], linestyle="--",
                     label=f"{plan} % done of {total[plan]:.0f}")
    ax2.set_ylabel("% done")
    ax2.grid(visible=False)
    ax.set_ylim(0, max([v for _, vs in thr.values() for v in vs] + [1]) * 1.4)
    ax2.set_ylim(0, 140)
    ax2.set_yticks([0, 25, 50, 75, 100])
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, loc="upper left")
    if not any(v for _, vs in done.values() for v in vs):
        ax.text(0.5, 0.5, "no progress reported before the copies ended", ha="center", transform=ax.transAxes)
    timeline(ax)

    # Backup size per plan (the last value each plan reported) and the backups histogram's count
    ax = axes[2][0]
    backups = last(scrapes, "cutover_backup_bytes_count", lambda l: "all").get("all", 0)
    ax.set_title(f"Backup size per plan ({backups:.0f} backups taken)")
    sizes = last(scrapes, "cutover_plan_backup_bytes", plan_name)
    names = sorted(sizes)
    ax.bar(names, [sizes[n] / 2**20 for n in names], 0.5, color=palette[5])
    for x, n in enumerate(names):
        ax.text(x, sizes[n] / 2**20, f"{sizes[n] / 2**20:.2f} MiB", ha="center", va="bottom", fontsize=7)
    ax.set_ylabel("MiB")

    # Reconcile errors by label: sum by (label) (rate(cutover_reconcile_errors_total[10s]))
    ax = axes[2][1]
    ax.set_title("Reconcile errors by label (rate, 10s window)")
    errs = series(scrapes, "cutover_reconcile_errors_total", lambda l: l.get("label", "?"))
    for i, (label, (ts, vs)) in enumerate(sorted(errs.items())):
        ax.plot(*rate(ts, vs, 10), color=palette[(i + 4) % len(palette)], label=f"{label} ({vs[-1]:.0f} in all)")
    if errs:
        ax.legend(loc="upper left")
    else:
        ax.text(0.5, 0.5, "no reconcile errors", ha="center", transform=ax.transAxes)
        ax.set_ylim(0, 1)
    ax.set_ylabel("per second")
    timeline(ax)

    # Reconciles by result: sum by (result) (rate(cutover_reconciles_total[10s]))
    ax = axes[2][2]
    ax.set_title("Reconciles by result (rate, 10s window)")
    recs = series(scrapes, "cutover_reconciles_total", lambda l: l.get("result", "?"))
    for i, (result, (ts, vs)) in enumerate(sorted(recs.items())):
        ax.plot(*rate(ts, vs, 10), color=palette[i % len(palette)], label=f"{result} ({vs[-1]:.0f} in all)")
    ax.set_ylabel("per second")
    ax.legend(loc="upper left")
    timeline(ax)

    fig.tight_layout(rect=(0, 0, 1, 0.935))
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=80)
    print(f"wrote {out_path}", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(REPO / "docs/img/dashboard.png"))
    ap.add_argument("--from", dest="source", help="plot these saved scrapes instead of running hack/demo")
    env_logs = Path(os.environ.get("CUTOVER_ENV_DIR", REPO / ".dev-env")) / "logs"
    ap.add_argument("--scrapes", default=str(env_logs / "dashboard-scrapes.jsonl"))
    ap.add_argument("--interval", type=float, default=0.5)
    # Enough that the copy and the backup take long enough to be seen between scrapes (the
    # operator refreshes copy progress every 5 s); hack/demo's own default is 3000.
    ap.add_argument("--documents", type=int, default=40000, help="content items seeded, and as many events (CUTOVER_DEMO_DOCUMENTS)")
    args = ap.parse_args()
    source = args.source
    if source is None:
        env_logs.mkdir(parents=True, exist_ok=True)
        run_demo_and_scrape(args.interval, args.documents, args.scrapes, env_logs / "dashboard-demo.log")
        source = args.scrapes
    render(load(source), Path(args.out))


if __name__ == "__main__":
    main()
