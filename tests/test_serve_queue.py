"""The node's queue, rules, config and status without an archive: leases, back-off, idempotence, several
workers on one SQLite file, config errors in one line, the README's config example."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import pytest
import yaml

from edge_medsam.cli import main
from edge_medsam.errors import InputError
from edge_medsam.serve.config import Rule, load_settings, settings_from_mapping
from edge_medsam.serve.jobs import JobQueue, LeaseLost
from edge_medsam.serve.rules import SeriesTags, select_rule
from edge_medsam.serve.status import queue_status

README = Path(__file__).resolve().parents[1] / "README.md"


def test_a_series_is_one_job_per_bundle(tmp_path: Path) -> None:
    queue = JobQueue(tmp_path / "q.sqlite")
    assert queue.add("1.2.3", "sha-a", "orthanc", "id-1")
    assert not queue.add("1.2.3", "sha-a", "scp", "elsewhere")  # the same series again
    assert queue.add("1.2.3", "sha-b", "orthanc", "id-1")  # another bundle segments it again
    assert len(queue.rows()) == 2


def test_an_expired_lease_is_retaken_and_the_old_holder_cannot_finish(tmp_path: Path) -> None:
    queue = JobQueue(tmp_path / "q.sqlite", lease_seconds=0.2)
    queue.add("1.2.3", "sha", "orthanc", "id")
    first = queue.claim("w1")
    assert first is not None and queue.claim("w2") is None
    time.sleep(0.3)
    second = queue.claim("w2")
    assert second is not None and second.id == first.id and second.attempts == 2
    with pytest.raises(LeaseLost):
        queue.done(first, "seg", 1)
    queue.storing(second)
    queue.done(second, "seg", 1)
    (row,) = queue.rows()
    assert (row["state"], row["seg_uid"], row["owner"]) == ("done", "seg", None)


def test_transient_errors_back_off_then_fail_with_the_reason(tmp_path: Path) -> None:
    queue = JobQueue(tmp_path / "q.sqlite", max_attempts=3, retry_seconds=0.05)
    queue.add("1.2.3", "sha", "orthanc", "id")
    delays = []
    for _ in range(3):
        job = wait_claim(queue)
        delays.append(queue.retry(job, "ConnectError: archive down"))
    assert delays == [0.05, 0.1, 0.0]
    (row,) = queue.rows()
    assert row["state"] == "failed" and row["reason"] == "gave up after 3 attempts: ConnectError: archive down"


def test_a_job_whose_workers_keep_dying_fails_after_max_attempts(tmp_path: Path) -> None:
    queue = JobQueue(tmp_path / "q.sqlite", lease_seconds=0.05, max_attempts=2)
    queue.add("1.2.3", "sha", "orthanc", "id")
    assert queue.claim("w1") and not time.sleep(0.1) and queue.claim("w2")
    time.sleep(0.1)
    assert queue.claim("w3") is None
    assert "gave up after 2 attempts" in queue.rows("failed")[0]["reason"]


def wait_claim(queue: JobQueue, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = queue.claim("w")
        if job is not None:
            return job
        time.sleep(0.01)
    raise AssertionError("no job became due")


def test_workers_sharing_one_file_never_take_the_same_job(tmp_path: Path) -> None:
    path = tmp_path / "q.sqlite"
    setup = JobQueue(path)
    for i in range(60):
        setup.add(f"1.2.{i}", "sha", "orthanc", str(i))
    taken: list[int] = []
    lock = threading.Lock()

    def work(name: str) -> None:
        queue = JobQueue(path)  # its own connection, as another process would have
        while (job := queue.claim(name)) is not None:
            queue.done(job, "seg", 1)
            with lock:
                taken.append(job.id)

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(taken) == list(range(1, 61))
    assert queue_status(setup)["counts"]["done"] == 60


def test_received_series_are_queued_once_stable(tmp_path: Path) -> None:
    queue = JobQueue(tmp_path / "q.sqlite")
    queue.add("1.2.3", "sha", "scp", "folder", state="received")
    assert queue.receiving("1.2.3", "sha") and queue.claim("w") is None
    assert queue.promote_stable(60.0) == []
    assert queue.promote_stable(0.0) == ["1.2.3"]
    assert not queue.receiving("1.2.3", "sha") and queue.claim("w") is not None


def test_rules_pick_the_first_match_and_never_segment_non_images() -> None:
    rules = [Rule(modality="CT", body_part="CHEST|LUNG", prompt="skip"), Rule(modality="CT|MR")]
    assert select_rule(rules, SeriesTags("CT", "thorax", "chest")).prompt == "skip"
    assert select_rule(rules, SeriesTags("mr", "T1", "HEAD")) == rules[1]
    assert select_rule(rules, SeriesTags("US")) is None
    assert select_rule([Rule()], SeriesTags("SEG")) is None


@pytest.mark.parametrize(("data", "words"), [
    ({"orthanc": {"url": "http://x"}, "wokers": 2}, "did you mean 'workers'"),
    ({"orthanc": {"url": "http://x"}, "rules": [{"modality": "CT("}]}, "not a regular expression"),
    ({"orthanc": {"url": "http://x"}, "rules": [{"prompt": "box"}]}, "is not one of self, skip"),
    ({"scp": {"allowed_ae_titles": ["A"]}}, "has no orthanc section"),
    ({"orthanc": {"url": "http://x"}, "scp": {}}, "allows no AE title"),
    ({"destination": {"kind": "dicom"}}, "no orthanc, dicomweb or scp section"),
    ({"dicomweb": {"url": "http://pacs/dicom-web"}, "destination": {"kind": "orthanc"}},
     "stores SEGs by orthanc but has no orthanc section"),
    ({"orthanc": {"url": "http://x", "pol_seconds": 1}}, "did you mean 'poll_seconds'"),
])
def test_config_mistakes_are_one_line(data: dict, words: str) -> None:
    with pytest.raises(InputError, match=re.escape(words)):
        settings_from_mapping(data, Path("/srv"))


def _readme_config() -> str:
    section = README.read_text().split("## PACS node", 1)[1]
    return re.search(r"```yaml\n(.*?)```", section, re.DOTALL).group(1)


def test_the_readme_config_example_loads(tmp_path: Path) -> None:
    path = tmp_path / "node.yaml"
    path.write_text(_readme_config())
    settings = load_settings(path)
    assert settings.orthanc is not None and settings.queue.parent == tmp_path.resolve() / "var"
    assert yaml.safe_load(_readme_config())["rules"]


def test_status_prints_counts_and_failures(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "node.yaml"
    config.write_text(yaml.safe_dump({"queue": "q.sqlite", "orthanc": {"url": "http://127.0.0.1:1"}}))
    assert main(["serve", "status", "--config", str(config)]) == 2  # no queue yet
    queue = JobQueue(tmp_path / "q.sqlite")
    queue.add("1.2.3", "sha", "orthanc", "id")
    queue.add("1.2.4", "sha", "orthanc", "id2")
    queue.fail(queue.claim("w"), "not a readable image")
    queue.done(queue.claim("w"), "seg", 3)
    capsys.readouterr()
    assert main(["serve", "status", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "done 1" in out and "failed 1" in out and "failed 1.2.3 after 1 attempt(s): not a readable image" in out
