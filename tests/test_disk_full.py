"""A full disk: the daemon's database on a 4 MB tmpfs, filled by promises with 64 KiB params.

Every write that does not fit gets 507 ``StoreFull`` ("disk full", never an internal error) and the
daemon stays up; restarted while full it says "disk full" (not "damaged"); once space is freed it starts,
writes succeed again, and every acknowledged promise is there. Mounting a tmpfs needs root (and the mount capability); the test skips with the reason otherwise.
"""

from __future__ import annotations

import base64
import os
import subprocess
import tempfile
from collections.abc import Iterator

import pytest
from daemon_proc import FAR, Daemon

PARAM = base64.b64encode(os.urandom(48 * 1024)).decode()  # 64 KiB of base64 that does not compress


@pytest.fixture
def small_disk() -> Iterator[str]:
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    where = tempfile.mkdtemp(dir="/tmp", prefix="rf-")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", where],
                          capture_output=True, text=True)
    if done.returncode != 0:
        os.rmdir(where)
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", where], check=False)
        os.rmdir(where)


def create(c, id: str) -> int:  # type: ignore[no-untyped-def]
    r = c.post("/promises", json={"id": id, "timeout": FAR, "param": {"data": PARAM}})
    if r.status_code >= 500:
        body = r.json()
        assert r.status_code == 507 and body["error"]["code"] == 50700, r.text
        assert "disk full" in body["error"]["message"]
    return int(r.status_code)


def test_a_full_disk_is_a_507_and_loses_nothing(small_disk: str) -> None:
    filler = os.path.join(small_disk, "filler")
    with open(filler, "wb") as f:
        f.write(os.urandom(1536 * 1024))  # room we give back later: enough for SQLite to checkpoint
    daemon = Daemon(dir=tempfile.mkdtemp(dir="/tmp", prefix="rd-"), db=os.path.join(small_disk, "r.db"))
    daemon.start()
    acknowledged: list[str] = []
    try:
        with daemon.client() as c:
            statuses = []
            for i in range(60):  # 60 x 64 KiB is more than the disk holds
                status = create(c, f"p{i}")
                statuses.append(status)
                if status == 201:
                    acknowledged.append(f"p{i}")
            assert 507 in statuses and acknowledged, statuses
            assert statuses.count(507) >= 3  # and it stays full, answering each time
            assert c.get("/ping").status_code == 200  # still up
        log = daemon.stderr()
        assert "Traceback" not in log and "internal" not in log.lower()
        assert log.count("disk full") == 1  # said once, not once per refused write
        daemon.stop()
        # Restarted while the disk is still full: SQLite may need room to replay its log. If so, the
        # daemon says "disk full" (exit 3), not that the database is damaged.
        proc = daemon.spawn()
        try:
            daemon.wait_ready()
            daemon.stop()
        except RuntimeError:
            assert proc.returncode == 3
            assert "disk full" in daemon.stderr().splitlines()[-1] and "restore" not in daemon.stderr()
        os.unlink(filler)  # an operator frees space
        daemon.start()
        with daemon.client() as c:
            assert create(c, "after-space") == 201
            acknowledged.append("after-space")
            for id in acknowledged:
                assert c.get(f"/promises/{id}").status_code == 200, id
    finally:
        daemon.stop()
        daemon.cleanup()
