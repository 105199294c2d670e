"""Graph-mode (TF1) cluster helpers: servers, session options, traces, done-queue shutdown."""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import tensorflow as tf
from tensorflow.core.protobuf import rewriter_config_pb2

from labkit import data, report
from labkit.cluster import Task, TFConfig

tf1 = tf.compat.v1
tf.get_logger().setLevel("ERROR")  # the TF1 APIs these labs teach log deprecation notices
READY_POLL_S = 0.25
STOP_GRACE_S = 0.5
REPLY_GRACE_S = 0.3


def start_server(cfg: TFConfig) -> tf.distribute.Server:
    """This task's gRPC server, listening on its own address from TF_CONFIG."""
    return tf.distribute.Server(tf.train.ClusterSpec(cfg.cluster), job_name=cfg.task.type,
                                task_index=cfg.task.index, start=True)


def session_config(devices: Iterable[str], *, fold_constants: bool = True,
                   timeout_ms: int = 0) -> tf1.ConfigProto:
    """Session options every graph lab needs.

    device_filters: without them a session waits until every task of the cluster answers, and
    a worker could not start before all the other workers are up.
    fold_constants=False: Grappler would otherwise evaluate an all-constant graph on the task
    that runs the session, and the placement a lab wants to show would never happen.
    """
    config = tf1.ConfigProto(device_filters=sorted(devices), operation_timeout_in_ms=timeout_ms)
    if not fold_constants:
        rewrite = config.graph_options.rewrite_options
        rewrite.constant_folding = rewriter_config_pb2.RewriterConfig.OFF
    return config


def traced_run(sess, fetches, feed_dict: dict | None, path: Path):
    """Run once with a full trace; write the RunMetadata step_stats (where each op really ran,
    as reported by the tasks that ran it) as protobuf text for the lab's check to read.
    Returns the fetched values and {op name: device it ran on}."""
    metadata = tf1.RunMetadata()
    options = tf1.RunOptions(trace_level=tf1.RunOptions.FULL_TRACE)
    result = sess.run(fetches, feed_dict=feed_dict, options=options, run_metadata=metadata)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(str(metadata.step_stats))
    ran_on = {node.node_name: dev.device
              for dev in metadata.step_stats.dev_stats for node in dev.node_stats}
    return result, ran_on


class PollingWorkerSessionCreator(tf1.train.SessionCreator):
    """A non-chief's session creator that re-checks readiness every 0.25 s.

    TensorFlow's WorkerSessionCreator (what MonitoredTrainingSession uses for non-chiefs) checks
    every 30 s, fixed: a worker that starts a moment before the chief has initialized the
    variables, or that recovers after a ps restart, would idle for 30 s.
    """

    def __init__(self, master: str, config: tf1.ConfigProto) -> None:
        self._scaffold = tf1.train.Scaffold()
        self._master = master
        self._config = config

    def create_session(self):
        self._scaffold.finalize()
        manager = tf1.train.SessionManager(
            local_init_op=self._scaffold.local_init_op,
            ready_op=self._scaffold.ready_op,
            ready_for_local_init_op=self._scaffold.ready_for_local_init_op,
            graph=tf1.get_default_graph(),
            recovery_wait_secs=READY_POLL_S)
        return manager.wait_for_session(self._master, config=self._config)


def monitored_session(server: tf.distribute.Server, *, is_chief: bool, checkpoint_dir: Path,
                      hooks: list, config: tf1.ConfigProto, checkpoint_steps: int = 100):
    """MonitoredTrainingSession for the chief (initializes or restores from checkpoint, saves
    checkpoints and summaries, `global_step/sec` among them, every `checkpoint_steps`); the
    same MonitoredSession with a fast readiness poll otherwise. Both recover by themselves from
    a restarted ps.

    Closing waits stop_grace_period_secs for the session's threads; the only one these labs
    have is a synchronous run's queue runner, which waits for gradients that never come once
    training is over: TensorFlow's default of 120 s would be spent waiting for nothing.
    """
    if is_chief:
        threading.excepthook = _quiet_cancelled_queue_runner
        return tf1.train.MonitoredTrainingSession(
            master=server.target, is_chief=True, checkpoint_dir=str(checkpoint_dir),
            hooks=hooks, config=config, save_checkpoint_steps=checkpoint_steps,
            save_checkpoint_secs=None, save_summaries_steps=checkpoint_steps,
            log_step_count_steps=checkpoint_steps, stop_grace_period_secs=STOP_GRACE_S)
    return tf1.train.MonitoredSession(
        session_creator=PollingWorkerSessionCreator(server.target, config), hooks=hooks,
        stop_grace_period_secs=STOP_GRACE_S)


def _quiet_cancelled_queue_runner(args: threading.ExceptHookArgs) -> None:
    """The queue runner that the grace period gave up on is cancelled when the session closes:
    expected, not worth a traceback."""
    if not (args.exc_type is tf.errors.CancelledError
            and args.thread is not None and args.thread.name.startswith("QueueRunnerThread")):
        threading.__excepthook__(args)


@dataclass
class Trained:
    progress: report.Progress
    local_steps: int
    test_accuracy: float  # measured by the chief only; NaN elsewhere


def train_between_graph(server: tf.distribute.Server, cfg: TFConfig, args: argparse.Namespace, *,
                        ds: data.Dataset, is_chief: bool, config: tf1.ConfigProto, hooks: list,
                        train: tf.Operation, global_step: tf.Variable, loss: tf.Tensor,
                        accuracy: tf.Tensor, inputs: tuple[tf.Tensor, tf.Tensor]) -> Trained:
    """The training loop of the between-graph labs, run by every worker on its own graph.

    Trains until the hooks stop it (a StopAtStepHook at --steps global steps) and writes
    tasks/<type>-<index>.json. The chief also traces its first step into step_stats.pbtxt
    (where each op ran) and measures test accuracy every --eval-every global steps and at the
    end. A ps restart shows up as a global step that falls back to the last checkpoint.
    """
    batches = data.batches(ds, args.batch_size, seed=cfg.task.index)
    test_feed = dict(zip(inputs, (ds.x_test, ds.y_test), strict=True))
    progress = report.Progress()
    final = _FinalEvaluation(progress, [global_step, accuracy], test_feed)
    local_steps, next_eval = 0, args.eval_every
    checkpoints = args.output_dir / "checkpoints"
    with monitored_session(server, is_chief=is_chief, checkpoint_dir=checkpoints,
                           hooks=hooks + [final] * is_chief, config=config) as sess:
        while not sess.should_stop():
            feed = dict(zip(inputs, next(batches), strict=True))
            fetches = [train, global_step, loss]
            if is_chief and local_steps == 0:
                (_, step, value), _ = traced_run(sess, fetches, feed,
                                                 args.output_dir / "step_stats.pbtxt")
            else:
                _, step, value = sess.run(fetches, feed)
            local_steps += 1
            test_accuracy = None
            if is_chief and step >= next_eval and not sess.should_stop():
                test_accuracy = sess.run(accuracy, test_feed)
                next_eval = (step // args.eval_every + 1) * args.eval_every
            progress.update(int(step), value, test_accuracy)
    report.write_task(args.output_dir, cfg.task.stem, progress, local_steps)
    return Trained(progress, local_steps, final.accuracy)


class _FinalEvaluation(tf1.train.SessionRunHook):
    """Test accuracy once training has stopped (a stopped MonitoredSession refuses to run)."""

    def __init__(self, progress: report.Progress, fetches: list, feed: dict) -> None:
        self.progress, self.fetches, self.feed = progress, fetches, feed
        self.accuracy = float("nan")

    def end(self, session: tf1.Session) -> None:
        step, accuracy = session.run(self.fetches, self.feed)
        self.accuracy = float(accuracy)
        self.progress.update(int(step), None, accuracy, force=True)


def _done_queue(task: Task) -> tf.queue.FIFOQueue:
    """A queue of task names living on `task`; every process that names it reaches the same one."""
    with tf.device(task.device):
        return tf.queue.FIFOQueue(1000, tf.string, shapes=[[]],
                                  shared_name=f"done-queue-{task.stem}")


def serve_until_done(server: tf.distribute.Server, cfg: TFConfig, finishers: list[Task],
                     output_dir: Path) -> None:
    """For a task that only serves (a ps): return once every finishing task is done.

    A finisher writes tasks/<type>-<index>.json, then enqueues its name here. The queue lives in
    this process, so a restarted server has lost the names it received before: files that
    exist once this server is up count as well (a name sent after that reaches this queue).
    Names, not a count: a finisher restarted after signalling may signal twice.
    """
    waiting = {task.stem for task in finishers}
    waiting -= {stem for stem in waiting if (output_dir / "tasks" / f"{stem}.json").exists()}
    with tf.Graph().as_default():
        take = _done_queue(cfg.task).dequeue()
        with tf1.Session(server.target, config=session_config([cfg.task.device])) as sess:
            while waiting:
                waiting.discard(sess.run(take).decode())
    print(f"{cfg.task.name}: all of {', '.join(t.name for t in finishers)} are done; exiting",
          flush=True)
    # The last finisher's enqueue call is still waiting for this server's reply.
    time.sleep(REPLY_GRACE_S)


def signal_done_and_exit(server: tf.distribute.Server, cfg: TFConfig,
                         servers: list[Task]) -> NoReturn:
    """For a finishing task, once its files are written: put this task's name on every server's
    done queue, then exit 0.

    The session stays open: the servers exit as soon as they have our name, and closing it
    would ask them to clean up their part of the graph, logging errors when they have gone.
    """
    with tf.Graph().as_default():
        puts = [(task, _done_queue(task).enqueue(cfg.task.stem)) for task in servers]
        devices = [cfg.task.device] + [task.device for task in servers]
        sess = tf1.Session(server.target, config=session_config(devices, timeout_ms=5000))
        for task, put in puts:
            try:
                sess.run(put)
            except (tf.errors.UnavailableError, tf.errors.DeadlineExceededError) as err:
                # Not fatal: a server that is gone or restarting will see our tasks/ file.
                print(f"{cfg.task.name}: could not signal {task.name}: {err.message}", flush=True)
    report.exit_now()
