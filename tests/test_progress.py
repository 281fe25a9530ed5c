"""Long work shows progress: runs done/total with an ETA, and the current
run's epoch and loss; plain lines when the output is not a terminal."""

from __future__ import annotations

import io

from benchbed.progress import PlainProgress, RichProgress, make_progress

EVENTS = [
    {"key": "k1", "label": "elbo z=2 seed=0", "event": "start", "resume": False},
    {"key": "k1", "label": "elbo z=2 seed=0", "event": "step", "step": 50, "steps": 100, "epoch": 1,
     "epochs": 2, "loss": 123.4},
    {"key": "k1", "label": "elbo z=2 seed=0", "event": "epoch", "step": 100, "steps": 100, "epoch": 2,
     "epochs": 2},
    {"key": "k1", "label": "elbo z=2 seed=0", "event": "metric", "metric": "svm"},
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
        progress.on_event({"key": key, "label": label, "event": "start", "resume": False})
        progress.run_done(label, "finished", None, 1.0)
    assert progress.progress.tasks[progress.suite_task].completed == 3
    progress.close()
