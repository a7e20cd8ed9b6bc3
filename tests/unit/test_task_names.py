"""Every task the worker registers is named in worker.names, and routed to the queue named there."""

from __future__ import annotations

from worker.names import Queue, TaskName


def test_the_registered_tasks_are_the_named_ones_on_their_queues():
    from worker.celery_app import app

    app.loader.import_default_modules()  # the task modules of the app's include list, as a worker does
    registered = {name for name in app.tasks if name.startswith("jumpsync.")}
    assert registered == {task.value for task in TaskName}
    for task in TaskName:
        assert app.amqp.router.route({}, task.value)["queue"].name == task.queue.value


def test_provisioning_has_its_own_queue():
    assert {task for task in TaskName if task.queue is Queue.PROVISIONING} == {
        TaskName.PROVISION_SUBMIT, TaskName.PROVISION_APPLY, TaskName.PROVISION_RELAY,
        TaskName.PROVISION_EXPIRE}
