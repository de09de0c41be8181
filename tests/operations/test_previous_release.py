"""A rolling upgrade migrates first, so the previous release's workers run the sweeps against the new schema until
they are replaced (docs/operations.md, "Upgrades"). Its worker, from its own tree, must still do them."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import tarfile
from io import BytesIO
from pathlib import Path

import pytest

from config.celery import app as celery_app
from escalations.models import Notification, Workstream
from scorecards.models import StatusChange
from tests.scorecards.evaluation.test_sweep_celery import (
    _subprocess_env,
    breached_kpis,
    needs_redis,
    purge_queue,
    wait_until,
)

ROOT = Path(__file__).resolve().parents[2]
# The sweeps a worker of either release must run on the other's schema; only their names cross the boundary.
SWEEPS = [
    "scorecards.tasks.evaluate_kpis",
    "escalations.tasks.process_status_changes",
    "escalations.tasks.advance_escalations",
    "escalations.tasks.deliver_notifications",
]

pytestmark = [needs_redis, pytest.mark.celery_worker, pytest.mark.django_db(transaction=True)]


def previous_release_tree(into: Path) -> Path:
    """The commit named in deploy/PREVIOUS_RELEASE, checked out from git history into `into`."""
    commit = (ROOT / "deploy" / "PREVIOUS_RELEASE").read_text().split()[0]
    archive = subprocess.run(["git", "archive", "--format=tar", commit], cwd=ROOT, capture_output=True)
    if archive.returncode:
        pytest.skip(f"the previous release {commit} is not in this clone's git history (a shallow clone?)")
    with tarfile.open(fileobj=BytesIO(archive.stdout)) as tar:
        tar.extractall(into, filter="data")
    return into


def old_worker(tree: Path) -> subprocess.Popen:
    # -S: no .pth files, so the editable install of this release cannot lend the old tree a module it lacks (a
    # package's new tasks.py, found by autodiscovery); the libraries come from site-packages all the same.
    libraries = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    env = _subprocess_env() | {"PYTHONPATH": os.pathsep.join([str(tree), *sorted(libraries)])}
    return subprocess.Popen(
        [sys.executable, "-S", "-m", "celery", "-A", "config", "worker", "--pool=solo", "--loglevel=WARNING"]
        + ["--without-mingle", "--without-gossip"],
        cwd=tree,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def test_the_previous_release_worker_runs_the_sweeps_on_the_new_schema(tmp_path):
    tree = previous_release_tree(tmp_path / "previous")
    [kpi] = breached_kpis(1)  # written by this release's code, on this release's schema, with an owner
    purge_queue()

    worker = old_worker(tree)
    try:
        for name in SWEEPS:
            celery_app.send_task(name)
        # One message at a time, in the order sent: the delivery runs after the notifications were written.
        wait_until(
            lambda: Notification.objects.filter(channel="email").exclude(delivered_at=None).exists(),
            45,
            "the old worker",
        )
    finally:
        worker.terminate()
        _, stderr = worker.communicate(timeout=30)

    assert "Traceback" not in stderr, stderr
    change = StatusChange.objects.get(kpi=kpi)
    assert (change.new, change.value, change.processed_at is not None) == ("off_track", 500, True)
    workstream = Workstream.objects.get(kpi=kpi)
    assert workstream.opened_by_change == change
    to_owner = Notification.objects.filter(recipient=kpi.owner, kind="mitigation")
    assert set(to_owner.values_list("channel", flat=True)) >= {"in_app", "email"}
    assert to_owner.get(channel="email").delivered_at is not None
