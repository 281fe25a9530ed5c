"""Long work shows progress: runs done/total with an ETA, and the current
run's epoch and loss; plain lines when the output is not a terminal."""

from __future__ import annotations

import io

import pickle

from benchbed import events
from benchbed.run.progress import PlainProgress, RichProgress, make_progress

RUN = {"key": "k1", "label": "elbo z=2 seed=0"}
EVENTS = [
    events.Started(**RUN, resume=False),
    events.Stepped(**RUN, step=50, steps=100, epoch=1, epochs=2, loss=123.4),
    events.EpochEnded(**RUN, step=100, steps=100, epoch=2, epochs=2),
    events.Evaluating(**RUN, metric="svm"),
]


def test_plain_progress_prints_runs_done_epochs_metrics_and_an_eta():
    stream = io.StringIO()
    progress = PlainProgress(stream)
    progress.start(2, 1, "suite (cpu)")
    for event in EVENTS:
        progress.on_event(event)
    progress.run_done("elbo z=2 seed=0", "finished", None, 12.0)
    lines = stream.getvalue().splitlines()
    assert lines[0] == "suite (cpu): 2 run(s) to do, 1 already done"
    assert "[1/2] elbo z=2 seed=0: started" in lines
    assert "  elbo z=2 seed=0: epoch 2/2 (step 100/100)" in lines
    assert "  elbo z=2 seed=0: evaluating svm" in lines
    assert lines[-1].startswith("[1/2] elbo z=2 seed=0: finished in 12s (ETA 0:00:")


def test_runs_that_start_together_get_their_own_numbers():
    stream = io.StringIO()
    progress = PlainProgress(stream)
    progress.start(4, 0, "suite (cpu)")
    progress.on_event(events.Started(key="k1", label="a", resume=False))
    progress.on_event(events.Started(key="k2", label="b", resume=False))  # --jobs 2: before a finishes
    progress.on_event(events.Started(key="k1", label="a", resume=True))  # a again after its worker died
    assert stream.getvalue().splitlines()[1:] == ["[1/4] a: started", "[2/4] b: started",
                                                  "[1/4] a: resuming from checkpoint"]

def test_a_pipe_gets_plain_lines():
    assert type(make_progress()) is PlainProgress  # pytest captures stderr: not a terminal


def test_the_terminal_display_tracks_the_current_run_and_the_suite():
    progress = RichProgress()
    progress.console.file = io.StringIO()
    progress.start(1, 0, "suite")
    for event in EVENTS[:2]:
        progress.on_event(event)
    run_task = progress.progress.tasks[progress.run_tasks["k1"]]
    assert (run_task.completed, run_task.total) == (50, 100)
    assert run_task.fields["detail"] == "epoch 1/2 loss 123.400"
    progress.on_event(EVENTS[3])
    assert run_task.fields["detail"] == "evaluating svm"
    progress.run_done("elbo z=2 seed=0", "finished", None, 3.0)
    assert progress.progress.tasks[progress.suite_task].completed == 1
    assert not progress.run_tasks
    progress.close()


def test_the_terminal_display_survives_many_runs():
    progress = RichProgress()
    progress.console.file = io.StringIO()
    progress.start(3, 0, "suite")
    for n in range(3):
        key, label = f"k{n}", f"run {n}"
        progress.on_event(events.Started(key=key, label=label))
        progress.run_done(label, "finished", None, 1.0)
    assert progress.progress.tasks[progress.suite_task].completed == 3
    progress.close()


def test_events_name_their_run_and_cross_process_boundaries_unchanged():
    bare = events.Stepped(step=3, steps=10, epoch=1, epochs=2, loss=1.5)
    named = bare.of("k9", "vimae z=8 seed=1")
    assert (named.key, named.label, named.step, named.loss) == ("k9", "vimae z=8 seed=1", 3, 1.5)
    assert (bare.key, bare.label) == ("", "")  # of() makes a copy
    assert pickle.loads(pickle.dumps(named)) == named  # executors ship them between processes


def test_plain_progress_reports_a_resume_a_dead_worker_and_a_cluster_tally():
    stream = io.StringIO()
    progress = PlainProgress(stream)
    progress.start(3, 0, "suite")
    progress.on_event(events.Started(**RUN, resume=True))
    progress.on_event(events.Resumed(**RUN, step=40, epoch=1))
    progress.on_event(events.WorkerDied(**RUN, deaths=1))
    progress.on_event(events.ClusterStatus(pending=1, running=2, finished=0, failed=0, nodes=2, cpus=4.0))
    assert stream.getvalue().splitlines()[1:] == [
        "[1/3] elbo z=2 seed=0: resuming from checkpoint",
        "  elbo z=2 seed=0: resumed at step 40",
        "  elbo z=2 seed=0: its worker process died (1 time(s)); running it again",
        "cluster: 1 pending, 2 running, 0 finished, 0 failed on 2 node(s), 4 CPU(s)",
    ]
