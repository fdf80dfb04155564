"""The SQLite store's syncer: makes commits durable outside SQLite's write lock, and checkpoints the WAL.

With ``synchronous=FULL`` SQLite fsyncs the WAL inside ``COMMIT``, while it holds the file's write lock:
every later write, even one that need not be durable, waits for that fsync. The store instead commits with
``synchronous=NORMAL`` (the WAL is written, not flushed) and hands the commit's sequence number to this
thread, which fsyncs the WAL file and only then releases the calls that waited for that commit to be on
disk. One fsync covers every commit made before it started (group commit), and the next transaction runs
while the disk flushes. A commit whose fsync has not returned is visible to this process's own reads only
through :meth:`SQLiteStore`'s gate (a read of a record written by an unsynced commit waits for the sync).

Why this is as durable as ``FULL``: a returned fsync puts every byte written to the WAL before it on disk,
the commit frame included, and SQLite's recovery replays every valid frame; frames are only overwritten
after a checkpoint has copied them into the database file and synced it (``NORMAL`` checkpoints sync both
files). Checkpoints are started from here too, every :data:`CHECKPOINT_COMMITS` commits, so the event loop
never waits for one; the store runs them on its writing connection with no write of its own in between
(a checkpoint that writes race past never completes, and the WAL then never starts over: it grows).

:func:`post_outcomes` hands calls' results back to their event loops (from the writer or this thread).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import logging
import mmap
import os
import sqlite3
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from podium.errors import StoreError

log = logging.getLogger("podium.store")

__all__ = [
    "CHECKPOINT_COMMITS",
    "Outcome",
    "WalIndexHeader",
    "WalSyncer",
    "post_outcomes",
    "post_to",
    "set_sync_done",
    "sync_in_helper_process",
]

CHECKPOINT_COMMITS = 250
"""A checkpoint runs after this many commits (a few pages each: about SQLite's default of 1,000 pages). The
WAL file's size cannot say: it keeps its largest size while later transactions rewrite it from the start."""

Done = Callable[[BaseException | None], None]

Outcome = tuple["asyncio.Future[Any]", asyncio.AbstractEventLoop, Any, BaseException | None]
"""A call's future, its loop, and its result or exception: what :func:`post_outcomes` resolves."""


_HELPER = r"""
import os, signal, struct, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C, or a stop sent to the whole group: the server
signal.signal(signal.SIGTERM, signal.SIG_IGN)  # still writes while it stops; the helper ends with its input
rfd, wfd, wal = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
fd = None
while True:
    data = os.read(rfd, 65536)
    if not data:
        break
    n = len(data) // 8
    target = max(struct.unpack("<%dq" % n, data[: n * 8]))
    try:
        if fd is None:
            fd = os.open(wal, os.O_RDONLY)
            d = os.open(os.path.dirname(wal) or ".", os.O_RDONLY)
            try:
                os.fsync(d)
            finally:
                os.close(d)
        os.fdatasync(fd)
    except OSError as exc:
        os.write(wfd, struct.pack("<q", -(exc.errno or 1)))
        break
    os.write(wfd, struct.pack("<q", target))
"""
"""The sync helper process: reads commit sequence numbers (8 bytes each), fsyncs the WAL, answers the last
number it covers (a negative errno if the fsync failed, then exits). It ignores SIGINT and SIGTERM and ends
when its input does: when the store closes, or the server dies."""

_helper_wanted = False


def sync_in_helper_process(enabled: bool) -> None:
    """Make the WAL's fsyncs in a helper process, for the syncers made from now on in this process (``podium
    serve`` turns it on: it owns its process). The helper has an interpreter of its own: a thread of this one
    must take the GIL back from a busy event loop after every fsync, which costs the loop two context switches
    a sync; the loop instead reads the helper's answer as I/O. Where the helper cannot be started, the thread
    fsyncs, as without this."""
    global _helper_wanted
    _helper_wanted = enabled


class _Helper:
    """A running sync helper: commits are written to it, and its answers are read on the event loop that
    opened the store (``on_ack``)."""

    def __init__(self, wal: Path, loop: asyncio.AbstractEventLoop, on_ack: Callable[[], None]) -> None:
        r1, w1 = os.pipe()
        r2, w2 = os.pipe()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", _HELPER, str(r1), str(w2), str(wal)],
                pass_fds=(r1, w2),
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # a terminal's Ctrl-C is the server's to handle, not the helper's
            )
        except BaseException:
            for fd in (r1, w1, r2, w2):
                os.close(fd)
            raise
        os.close(r1)
        os.close(w2)
        self.to, self.answers, self.loop = w1, r2, loop
        self.sent = 0  # the last sequence number written to the helper
        os.set_blocking(r2, False)
        loop.add_reader(r2, on_ack)

    def send(self, seq: int) -> None:
        self.sent = max(self.sent, seq)
        os.write(self.to, struct.pack("<q", seq))

    def read(self) -> list[int] | None:
        """The answers waiting (``[]``: none yet), or ``None`` once the helper is gone."""
        try:
            data = os.read(self.answers, 65536)
        except BlockingIOError:
            return []
        if not data:
            return None
        n = len(data) // 8
        return list(struct.unpack(f"<{n}q", data[: n * 8]))

    def stop(self) -> None:
        """Close the pipes (the helper exits on its end of input) and reap it (from any thread)."""
        try:
            here = asyncio.get_running_loop() is self.loop
        except RuntimeError:
            here = False
        if here:
            self.loop.remove_reader(self.answers)
        else:
            with contextlib.suppress(RuntimeError):  # closed: it watches nothing any more
                self.loop.call_soon_threadsafe(self.loop.remove_reader, self.answers)
        with contextlib.suppress(OSError):
            os.close(self.to)
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:  # pragma: no cover - a helper stuck in fsync
            self.proc.kill()
            self.proc.wait()
        if not here:  # its reader may still run once on the loop: the descriptor is closed there
            with contextlib.suppress(RuntimeError):
                self.loop.call_soon_threadsafe(os.close, self.answers)
                return
        with contextlib.suppress(OSError):
            os.close(self.answers)


class WalSyncer:
    """A thread that fsyncs the WAL after commits (``fsync=True``) and checkpoints it.

    Sequence numbers order the commits that need a sync: :meth:`reserve` before ``COMMIT`` (from then on
    the commit may be visible), :meth:`committed` after it; :meth:`after` runs a callback once a sync
    covers a sequence number (at once if one already did), with the failure if the fsync failed."""

    def __init__(self, path: Path, *, fsync: bool, checkpoint: Callable[[], None]) -> None:
        self.path = path
        self.wal = Path(f"{path}-wal")
        self.fsync = fsync
        self._checkpoint = checkpoint
        self.visible = 0  # the last sequence number whose commit may be visible
        self.synced = 0  # the last sequence number a returned fsync covers
        self.failure: BaseException | None = None
        self._committed = 0
        self._writes = 0  # commits since the last checkpoint
        self._cond = threading.Condition()
        self._after: list[tuple[int, Done]] = []
        self._closing = False
        self._fd: int | None = None
        self._helper: _Helper | None = None
        if fsync and _helper_wanted:
            try:
                self._helper = _Helper(self.wal, asyncio.get_running_loop(), self._on_ack)
            except (RuntimeError, OSError, NotImplementedError) as exc:  # no loop, no process: the thread
                log.warning("SQLite sync helper not started (%s): fsyncs run on a thread", exc)
        self._thread = threading.Thread(target=self._run, name="podium-sqlite-sync", daemon=True)
        self._thread.start()

    # --- the writer's side --------------------------------------------------------------------------

    def reserve(self) -> int:
        """The sequence number of a commit about to be made (the writer calls this before ``COMMIT``)."""
        self.visible += 1
        return self.visible

    def committed(self, seq: int) -> None:
        """The commit ``seq`` returned (or failed): sync it."""
        helper = self._helper
        if helper is not None:
            self.wrote()
            try:
                helper.send(seq)
            except OSError as exc:  # the helper is gone: nothing more becomes durable
                self._fail(exc)
            return
        with self._cond:
            self._committed = max(self._committed, seq)
            self._writes += 1
            self._cond.notify()

    def wrote(self) -> None:
        """A commit that needs no sync happened (counted towards the next checkpoint)."""
        self._writes += 1
        if self._writes >= CHECKPOINT_COMMITS:
            with self._cond:
                self._cond.notify()

    def after(self, seq: int, done: Done) -> None:
        """Call ``done(None)`` once a sync covers ``seq`` (on this thread, or at once), ``done(exc)`` if
        syncing failed."""
        with self._cond:
            if self.synced < seq and self.failure is None:
                self._after.append((seq, done))
                return
        done(self.failure)

    def close(self) -> None:
        """Sync what was committed, then stop the thread (and the helper, once it answered for every commit:
        its answers are read on the loop, which goes on while this waits)."""
        helper = self._helper
        if helper is not None:
            deadline = time.monotonic() + 30
            while self.synced < helper.sent and self.failure is None and time.monotonic() < deadline:
                time.sleep(0.001)
            helper.stop()
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join()

    # --- the thread ---------------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                with self._cond:
                    while (
                        self._committed <= self.synced
                        and self._writes < CHECKPOINT_COMMITS
                        and not self._closing
                    ):
                        self._cond.wait()
                    target = self._committed
                    closing = self._closing and target <= self.synced
                    checkpoint = self._writes >= CHECKPOINT_COMMITS
                    if checkpoint:
                        self._writes = 0
                if target > self.synced:
                    self._sync(target)
                if closing:
                    return
                if checkpoint:
                    with contextlib.suppress(sqlite3.Error):  # busy: the next one will do
                        self._checkpoint()
        finally:
            if self._fd is not None:
                os.close(self._fd)

    def _sync(self, target: int) -> None:
        failure: BaseException | None = None
        if self.fsync and self.failure is None:
            try:
                self._fsync_wal()
            except OSError as exc:
                failure = exc
        with self._cond:
            if failure is not None and self.failure is None:
                self.failure = failure
            self.synced = max(self.synced, target)
            ready = [done for seq, done in self._after if seq <= target or self.failure is not None]
            self._after = [(seq, done) for seq, done in self._after if seq > target and self.failure is None]
        _posting.calls = {}  # what the callbacks hand to event loops: one wake-up per loop for this sync
        try:
            for done in ready:
                done(self.failure)
        finally:
            calls, _posting.calls = _posting.calls, None
            for loop, items in calls.items():
                with contextlib.suppress(RuntimeError):  # the loop is closed; nobody is waiting any more
                    loop.call_soon_threadsafe(_run_calls, items)

    def _on_ack(self) -> None:
        """On the loop: the helper's answers. Release the calls its syncs cover (in this callback, as
        :func:`_run_calls` does)."""
        helper = self._helper
        answers = helper.read() if helper is not None else []
        if answers is None:
            self._fail(OSError("the SQLite sync helper exited"))
            if helper is not None:
                with contextlib.suppress(Exception):
                    helper.loop.remove_reader(helper.answers)
            return
        if not answers:
            return
        failed = [a for a in answers if a < 0]
        if failed:
            self._fail(OSError(-failed[0], os.strerror(-failed[0])))
            return
        target = max(answers)
        with self._cond:
            self.synced = max(self.synced, target)
            ready = [done for seq, done in self._after if seq <= target]
            self._after = [(seq, done) for seq, done in self._after if seq > target]
        _run_calls([(done, (None,)) for done in ready])

    def _fail(self, exc: BaseException) -> None:
        """A sync failed: every call waiting for one fails, and so do all later calls."""
        with self._cond:
            if self.failure is None:
                self.failure = exc
            ready, self._after = [done for _, done in self._after], []
        for done in ready:
            done(self.failure)

    def _fsync_wal(self) -> None:
        """fsync the WAL file. ``fdatasync``, as SQLite syncs its WAL itself: the frames and the file's size
        are on disk when it returns (what recovery reads); only the modification time is left to the file
        system's next journal commit, which spares one per sync (the WAL is rewritten in place once it
        started over). The file is opened once: SQLite deletes (and a later connection makes anew) the WAL
        only when the last connection to the database closes, and the store keeps its connections open
        until this thread stopped; so the descriptor names the live WAL and a sync costs one system call
        (each call lets go of the GIL and must take it back from a busy event loop)."""
        if self._fd is None:
            try:
                self._fd = os.open(self.wal, os.O_RDONLY)
            except FileNotFoundError:
                return  # no WAL yet: nothing was written to one
            # the WAL's directory entry, once: a new file must survive a power cut too
            directory = os.open(self.wal.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        os.fdatasync(self._fd)


class WalIndexHeader:
    """The WAL index header (the first 48 bytes of the ``-shm`` file). Every commit, by any connection of
    any process, rewrites it before ``COMMIT`` returns (its change counter goes up), so the same bytes read
    twice mean that nobody committed in between. Read from a read-only mapping of the file made from the
    descriptor SQLite holds open (found in ``/proc/self/fd``, checked to name that file): nothing here opens
    or closes a descriptor of the file, which would drop SQLite's locks on it (POSIX locks belong to the
    process; Python's ``mmap`` keeps a descriptor of its own), and a read costs no syscall. The file is
    never truncated while this process holds it open (SQLite maps it too). ``read()`` is ``None`` where it
    cannot be mapped (the store then asks ``PRAGMA data_version`` each time)."""

    SIZE = 48

    def __init__(self, path: Path) -> None:
        self._addr: int | None = None
        self._header: ctypes.Array[ctypes.c_char] | None = None  # over the mapping
        shm = os.path.realpath(f"{path}-shm")
        with contextlib.suppress(OSError, ValueError, AttributeError):
            st = os.stat(shm)
            for name in os.listdir("/proc/self/fd"):
                with contextlib.suppress(OSError, ValueError):
                    fd = int(name)
                    if os.readlink(f"/proc/self/fd/{name}") != shm:
                        continue
                    found = os.fstat(fd)
                    same = (found.st_dev, found.st_ino) == (st.st_dev, st.st_ino)
                    if same and found.st_size >= 2 * self.SIZE:
                        self._addr = _map(fd, 2 * self.SIZE)
                        if self._addr is not None:
                            self._header = (ctypes.c_char * self.SIZE).from_address(self._addr)
                        break

    def read(self) -> bytes | None:
        header = self._header
        return None if header is None else header.raw

    def close(self) -> None:
        addr, self._addr, self._header = self._addr, None, None
        if addr is not None:
            _libc().munmap(ctypes.c_void_p(addr), ctypes.c_size_t(2 * self.SIZE))


@functools.cache
def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [
        ctypes.c_void_p,
        ctypes.c_size_t,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_long,
    ]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    return libc


def _map(fd: int, size: int) -> int | None:
    """A shared read-only mapping of ``fd``'s first ``size`` bytes, made without a descriptor of its own."""
    addr = _libc().mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
    return None if addr is None or addr == ctypes.c_void_p(-1).value else int(addr)


_posting = threading.local()
"""``calls``: while the syncer releases the callers of one sync, what they hand each loop (else ``None``)."""


def post_to(loop: asyncio.AbstractEventLoop, fn: Callable[..., None], *args: Any) -> None:
    """Run ``fn(*args)`` on ``loop`` (another thread's): at the end of the syncer's round if this is the
    syncer's thread releasing a sync's callers (one wake-up of each loop for all of them), else now."""
    calls = getattr(_posting, "calls", None)
    if calls is not None:
        calls.setdefault(loop, []).append((fn, args))
        return
    with contextlib.suppress(RuntimeError):  # the loop is closed; nobody is waiting any more
        loop.call_soon_threadsafe(fn, *args)


Woken = list[tuple[Callable[..., Any], Any, "asyncio.Future[Any]"]]

_waking = threading.local()
"""``woken``: while :func:`_run_calls` resolves a sync's futures on this thread, the done callbacks it took
from them (else ``None``)."""


def _run_calls(calls: list[tuple[Callable[..., None], tuple[Any, ...]]]) -> None:
    """On the loop's thread, a plain callback (no task is running): resolve the futures of a sync, then run
    their done callbacks here and now, each in its own context as the loop would, instead of queueing them for
    the loop's next round. A call that waited for the fsync (a durable write, a read of an unsynced record)
    goes on in this round: on a busy server a round is milliseconds, and a worker's next result, sent when
    this one is answered, would wait for it."""
    woken: Woken = []
    _waking.woken = woken
    try:
        for fn, args in calls:
            fn(*args)
    finally:
        _waking.woken = None
    for i, (callback, context, fut) in enumerate(woken):
        try:
            context.run(callback, fut)
        except (SystemExit, KeyboardInterrupt):
            for callback, context, fut in woken[i + 1 :]:  # the loop runs the others, as it would have
                fut.get_loop().call_soon(callback, fut, context=context)
            raise
        except BaseException as exc:
            fut.get_loop().call_exception_handler(
                {"message": f"Exception in callback {callback!r}", "exception": exc, "future": fut}
            )


def _finish(fut: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    """Set ``fut``'s outcome; inside :func:`_run_calls`, its done callbacks are taken to run there."""
    woken: Woken | None = getattr(_waking, "woken", None)
    callbacks = fut._callbacks if woken is not None else None
    if callbacks:
        for callback, _ in callbacks:
            fut.remove_done_callback(callback)
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(result)
    if callbacks:
        assert woken is not None
        woken.extend((callback, context, fut) for callback, context in callbacks)


def post_outcomes(items: list[Outcome]) -> None:
    """Resolve futures: at once on this thread's loop, through ``call_soon_threadsafe`` on another's."""
    if not items:
        return
    try:
        here: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        here = None
    by_loop: dict[asyncio.AbstractEventLoop, list[Outcome]] = {}
    for item in items:
        by_loop.setdefault(item[1], []).append(item)
    for loop, batch in by_loop.items():
        if loop is here:
            _resolve(batch)
        else:
            post_to(loop, _resolve, batch)


def _resolve(items: list[Outcome]) -> None:
    for fut, _, result, exc in items:
        if not fut.done():
            _finish(fut, result, exc)


def set_sync_done(fut: asyncio.Future[None], failure: BaseException | None) -> None:
    if fut.done():
        return
    error = (
        None
        if failure is None
        else StoreError(f"SQLite fsync failed ({failure}): the write may not be on disk")
    )
    _finish(fut, None, error)
