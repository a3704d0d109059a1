"""Callbacks during training: the live metrics log survives a kill and a resume; trackers receive every record."""

import functools
import os
import stat
import struct

import pytest

from mesalab.models import Transformer
from mesalab.train import Callback, MetricsLog, Trainer
from mesalab.train.callbacks import read_metrics_log
from mesalab.train.trackers import MLflow, TensorBoard, WandB, make_tracker, scalars


@pytest.fixture(scope="module")
def trainer(reg_task, lsa_cfg, small_train):
    return Trainer(reg_task, functools.partial(Transformer, lsa_cfg), small_train)


class Recorder(Callback):
    def __init__(self):
        self.calls = []

    def on_train_start(self, members, step, history):
        self.calls.append(("start", step, len(history)))

    def on_chunk_end(self, step, records):
        self.calls.append(("chunk", step, list(records)))

    def on_train_end(self, result):
        self.calls.append(("end", result.step, None))


def test_callbacks_see_every_record_once_in_order(trainer):
    rec = Recorder()
    res = trainer.fit([0, 1], progress=False, callbacks=[rec])
    chunks = [c for c in rec.calls if c[0] == "chunk"]
    assert rec.calls[0] == ("start", 0, 0) and rec.calls[-1] == ("end", res.step, None)
    assert [c[1] for c in chunks] == sorted(set(res.history.step))
    rows = [r for c in chunks for r in c[2]]
    assert rows == [tuple(r) for r in res.history.itertuples(index=False)]


def test_metrics_log_is_appended_while_training_and_matches_after_a_kill_and_resume(trainer, tmp_path):
    path = tmp_path / "metrics.csv"
    cut = trainer.fit([0, 1], checkpoint_dir=tmp_path, progress=False, stop_after=20,
                      callbacks=[MetricsLog(path, part="lsa")])
    assert len(read_metrics_log(path)) == len(cut.history)  # the killed run's curves are on disk
    # A killed process may have appended rows after its last checkpoint, the last one cut short.
    with open(path, "a") as f:
        f.write("30,0,0,train_loss,0.5\n30,1,1,train_l")
    assert len(read_metrics_log(path)) == len(cut.history) + 1
    done = trainer.fit([0, 1], checkpoint_dir=tmp_path, resume=True, progress=False,
                       callbacks=[MetricsLog(path, part="lsa")])
    log = read_metrics_log(path)
    assert log.drop(columns="part").equals(done.history) and set(log.part) == {"lsa"}
    # Readable by others: the process's umask, not mkstemp's 0600.
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_scalars_give_each_member_and_the_finite_mean():
    out = scalars([(10, 0, 0, "loss", 1.0), (10, 1, 5, "loss", 3.0), (10, 2, 6, "loss", float("nan"))], "p/")
    assert out == {10: {"p/loss/member0": 1.0, "p/loss/member1": 3.0, "p/loss/member2": out[10]["p/loss/member2"],
                        "p/loss/mean": 2.0}}


def test_unknown_tracker_is_refused_by_name(tmp_path):
    with pytest.raises(ValueError, match="tracker = 'neptune' is not allowed; expected one of tensorboard"):
        make_tracker("neptune", tmp_path)


def read_tfrecords(path):
    """The Event protos of a TensorBoard event file (TFRecord framing: length, crc, data, crc)."""
    from tensorboardX.proto import event_pb2

    data, events, at = path.read_bytes(), [], 0
    while at < len(data):
        (n,) = struct.unpack("<Q", data[at:at + 8])
        event = event_pb2.Event()
        event.ParseFromString(data[at + 12:at + 12 + n])
        events.append(event)
        at += 12 + n + 4
    return events


def test_tensorboard_adapter_writes_the_history(trainer, tmp_path):
    pytest.importorskip("tensorboardX")
    tb = TensorBoard(tmp_path, prefix="lsa/")
    res = trainer.fit([0], progress=False, callbacks=[tb])
    tb.close()
    (events_file,) = tmp_path.glob("events.out.tfevents.*")
    got = {(e.step, v.tag): v.simple_value for e in read_tfrecords(events_file) for v in e.summary.value}
    last = res.history[(res.history.metric == "test_loss") & (res.history.step == res.step)].value.item()
    assert got[(res.step, "lsa/test_loss/member0")] == pytest.approx(last)
    assert {s for s, tag in got if tag == "lsa/train_loss/mean"} == set(res.history.step)


def test_mlflow_adapter_logs_to_a_local_store(trainer, tmp_path):
    mlflow = pytest.importorskip("mlflow")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"  # MLflow's local store (its file store is deprecated)
    tracker = MLflow(prefix="lsa/", tracking_uri=uri, experiment="t")
    res = trainer.fit([0], progress=False, callbacks=[tracker])
    run_id = tracker.run.info.run_id
    tracker.close()
    history = mlflow.tracking.MlflowClient(tracking_uri=uri).get_metric_history(
        run_id, "lsa/test_loss/member0")
    want = res.history[res.history.metric == "test_loss"]
    assert [m.step for m in history] == list(want.step)
    assert [m.value for m in history] == pytest.approx(list(want.value))


def test_wandb_adapter_logs_offline(trainer, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_SILENT", "true")
    tracker = WandB(prefix="lsa/", dir=str(tmp_path), mode="offline", project="mesalab-test")
    res = trainer.fit([0], progress=False, callbacks=[tracker])
    summary = dict(tracker.run.summary)
    tracker.close()
    last = res.history[(res.history.metric == "test_loss") & (res.history.step == res.step)].value.item()
    assert summary["lsa/test_loss/member0"] == pytest.approx(last) and summary["lsa/step"] == res.step
    assert list(tmp_path.glob("wandb/offline-run-*/run-*.wandb"))
