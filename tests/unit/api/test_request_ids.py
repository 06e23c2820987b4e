"""Request ids (issue 27: read from the OS's CSPRNG 341 at a time): unique, the old shape, and a
forked child never repeats its parent's next ids."""

from __future__ import annotations

import os
import re

from margin.api.ids import RandomIds, new_request_id


def test_ids_keep_their_shape_and_never_repeat_across_refills() -> None:
    ids = [new_request_id() for _ in range(2000)]
    assert all(re.fullmatch(r"req_[0-9a-f]{24}", i) for i in ids)
    assert len(set(ids)) == len(ids)


def test_a_forked_child_draws_fresh_bytes() -> None:
    new_request_id()  # the parent holds unused bytes now
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids, to the parent
        os.close(read)
        os.write(write, " ".join(new_request_id() for _ in range(5)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child = set(pipe.read().split())
    os.waitpid(pid, 0)
    parent = {new_request_id() for _ in range(5)}
    assert len(child) == 5 and not child & parent


def test_forget_drops_the_buffer() -> None:
    ids = RandomIds()
    first = ids.take()
    ids.forget()
    assert ids.take() != first
