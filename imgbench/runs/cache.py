"""The cache of stored runs: per run file its run-level fields and per case everything a
record.Record holds but the per-round times, in SQLite, so that reading a history of a thousand runs
(2 MB of JSON each) does not parse them all again. The JSON runs stay the record; this is only a
cache, rebuilt from them, and never trusted over them. A file is re-read whenever its size, mtime,
ctime, inode or device changed, or the code that derives records from it did (reader()): its ctime
moves with every write and no one but the clock's owner can set it back, so an edit made in place
that restores the file's size and mtime is still seen, and a file changed within the clock's tick of
being read is not cached. Each file's rows carry an HMAC (SHA-256) of everything served from them
under a random key kept beside the database (runs.key, this user's only), so rows edited in the
database (medians multiplied, an error put on a good run, cases deleted) fail their check and the
file is read again, with one note: an edit to the cache cannot change a verdict, and forging rows
takes the key too. A removed file is simply not asked for. Unreadable files are kept with their
one-line error, so they are still reported as skipped. A corrupt database is rebuilt; one that
cannot be used at all (an unwritable cache folder, say) costs speed, never a command: the runs are
then read from their files, with one note. It lives in a cache folder ($IMGBENCH_CACHE, else
$XDG_CACHE_HOME/imgbench, else ~/.cache/imgbench), never beside the history, which may be read-only
or committed. Writers and readers in several processes meet in transactions (SQLite's WAL)."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import sqlite3
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import fields, replace
from pathlib import Path

from imgbench.core import identity
from imgbench.hw import machine_class
from imgbench.runs import checks, record, runfile
from imgbench.runs.record import FLAGS, Record
from imgbench.runs.runfile import RunError

KEPT = ("contention", "peak_memory_bytes", *FLAGS)  # the extra_info keys that history readers use
# Fields record.of_run takes from the run rather than the case: stored once per file.
RUN_FIELDS = ("datetime", "commit", "fingerprint", "torch", "profile", "version", "dataset",
              "optimizer", "threads", "lacks", "devices", "software")
CASE_FIELDS = tuple(f.name for f in fields(Record)
                    if f.init and f.name not in ("path", "data", *RUN_FIELDS))
# A file changed this recently could change again within its ctime's tick unseen: read, but not
# cached.
RACY_NS = 2_000_000_000
# From this many files to parse (a first read of a long history), one process per core parses them:
# JSON decoding is most of the cost (~50 ms a 2 MB run) and holds the GIL.
PARALLEL = 32
# of the tables below (PRAGMA user_version): a database of another is emptied and made again
SCHEMA = 2
TABLES = {"files": "path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, ctime_ns INTEGER, "
                   "ino INTEGER, dev INTEGER, reader TEXT, error TEXT, run TEXT, mac TEXT",
          "cases": "path TEXT, pos INTEGER, record TEXT, PRIMARY KEY (path, pos)"}

Item = list[Record] | RunError  # what one file gives: its records, or why it is unreadable


def location() -> Path:
    """The cache database: $IMGBENCH_CACHE, else $XDG_CACHE_HOME/imgbench, else
    ~/.cache/imgbench."""
    if os.environ.get("IMGBENCH_CACHE"):
        return Path(os.environ["IMGBENCH_CACHE"]) / "runs.sqlite"
    base = (Path(os.environ["XDG_CACHE_HOME"]) if os.environ.get("XDG_CACHE_HOME")
            else Path.home() / ".cache")
    return base / "imgbench" / "runs.sqlite"


def reader() -> str:
    """Changes with the code that turns a file into records, so records another version derived are
    re-read."""
    digest = hashlib.sha256()
    for module in (record, runfile, checks, identity, machine_class, sys.modules[__name__]):
        digest.update(Path(module.__file__).read_bytes())
    return digest.hexdigest()[:16]


def light(r: Record) -> Record:
    """A record as the cache holds it: no per-round data, extra_info trimmed to KEPT."""
    return replace(r, data=None, extra={k: r.extra[k] for k in KEPT if k in r.extra})


def read(path: Path) -> Item:
    """One file parsed: its light records, or its RunError."""
    try:
        return [light(r) for r in record.load(path)]
    except RunError as e:  # its messages start with the path; the cache stores them without it
        return e if str(e).startswith(str(path)) else RunError(f"{path}: {e}")


def parsed(files: list[Path]) -> Iterator[Item]:
    """read() of each file, in order; in parallel processes when there are many."""
    workers = min(os.cpu_count() or 1, 8)
    if len(files) < PARALLEL or workers < 2:
        yield from map(read, files)
        return
    pool = ProcessPoolExecutor(workers)
    try:
        yield from pool.map(read, files, chunksize=4)
    finally:
        pool.shutdown(cancel_futures=True)  # a reader that stops early does not wait for the rest


def records(files: list[Path], folders=()) -> tuple[list[Item], list[str]]:
    """Light records (or the RunError) of each file, in the order given, through the cache; and
    notes: one line when the cache was rebuilt or could not be used. Rows of files no longer under
    `folders` (the folders these files were found in) are dropped."""
    db = location()
    try:
        return _through(db, files, folders)
    except sqlite3.DatabaseError as e:
        if isinstance(e, sqlite3.OperationalError):
            # locked, unwritable, no such folder: not corrupt
            return list(parsed(files)), [f"cache {db} not usable ({e}): runs read from their files"]
        why = e
    try:  # corrupt: start again
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        items, notes = _through(db, files, folders)
        return items, [f"cache {db} was corrupt ({why}): rebuilt", *notes]
    except (sqlite3.DatabaseError, OSError) as e:
        return list(parsed(files)), [f"cache {db} not usable ({e}): runs read from their files"]


def _connect(db: Path) -> sqlite3.Connection:
    try:
        db.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise sqlite3.OperationalError(f"cannot create {db.parent}: {e.strerror or e}") from None
    con = sqlite3.connect(db, timeout=60, isolation_level=None)  # transactions are begun explicitly
    try:
        con.execute("PRAGMA journal_mode=WAL")  # readers never wait for a writer
        con.execute("PRAGMA synchronous=NORMAL")  # a cache: consistent after a crash is enough
        version = "PRAGMA user_version"
        if con.execute(version).fetchone()[0] != SCHEMA:
            con.execute("BEGIN IMMEDIATE")
            if con.execute(version).fetchone()[0] != SCHEMA:
                # another process may have made it meanwhile
                for table, columns in TABLES.items():
                    con.execute(f"DROP TABLE IF EXISTS {table}")
                    con.execute(f"CREATE TABLE {table} ({columns})")
                con.execute(f"{version} = {SCHEMA}")
            con.execute("COMMIT")
    except BaseException:
        con.close()
        raise
    return con


def _key(db: Path) -> bytes:
    """The HMAC key of this cache (runs.key beside it): made once, by exclusive creation, readable
    by this user only. One missing or damaged is made again, which fails every row's check: the
    cache is then rebuilt from the runs."""
    path = db.parent / "runs.key"
    for _ in range(2):
        try:
            key = path.read_bytes()
            if len(key) == 32:
                return key
            path.unlink()  # damaged: made again below
        except FileNotFoundError:
            pass
        except OSError as e:
            raise sqlite3.OperationalError(f"cannot read {path}: {e.strerror or e}") from None
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            continue  # another process made it first: read theirs
        except OSError as e:
            raise sqlite3.OperationalError(f"cannot create {path}: {e.strerror or e}") from None
        with os.fdopen(fd, "wb") as out:
            out.write(key := os.urandom(32))
        return key
    raise sqlite3.OperationalError(f"cannot make {path}")


def _mac(key: bytes, path: str, stamp: tuple, me: str, error, run, cases: list[str]) -> str:
    """The check of one file's rows: everything that is served from them, and what they are of."""
    text = json.dumps([path, list(stamp), me, error, run, cases])
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


def _through(db: Path, files: list[Path], folders) -> tuple[list[Item], list[str]]:
    me = reader()
    con = _connect(db)
    try:
        secret = _key(db)
        keys, stamps, items, forged = [], [], {}, []
        con.execute("BEGIN")  # one snapshot for every file found current
        for i, f in enumerate(files):
            try:
                st = f.stat()
                key = str(f.resolve())
            except OSError:
                keys.append(None)
                stamps.append(None)
                continue  # gone since it was found: read() says so
            keys.append(key)
            stamps.append((st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev))
            row = con.execute("SELECT size, mtime_ns, ctime_ns, ino, dev, reader, error, run, mac "
                              "FROM files WHERE path = ?", (key,)).fetchone()
            if row and row[:6] == (*stamps[-1], me):
                if (item := _cached(con, secret, key, f, row)) is None:
                    forged.append(f)
                else:
                    items[i] = item
        con.execute("COMMIT")
        missing = [i for i in range(len(files)) if i not in items]
        for i, item in zip(missing, parsed([files[i] for i in missing]), strict=True):
            items[i] = item
            if stamps[i] and time.time_ns() - max(stamps[i][1:3]) >= RACY_NS:
                _store(con, secret, keys[i], stamps[i], me, files[i], item)
        _prune(con, folders, set(keys))
        notes = ([f"cache: the rows of {len(forged)} run file(s) failed their check (edited in "
                  f"the cache, e.g. {forged[0]}): read from the files again"] if forged else [])
        return [items[i] for i in range(len(files))], notes
    finally:
        con.close()


def _cached(con: sqlite3.Connection, secret: bytes, key: str, f: Path, row: tuple) -> Item | None:
    """The file's item from its rows, or None when they fail their check."""
    error, run, mac = row[6:]
    cases = [text for (text,) in con.execute("SELECT record FROM cases WHERE path = ? ORDER BY pos",
                                             (key,))]
    if not isinstance(mac, str) or not hmac.compare_digest(
            mac, _mac(secret, key, row[:5], row[5], error, run, cases)):
        return None
    if error is not None:
        return RunError(f"{f}{error}")  # stored without the path, which may be spelt otherwise now
    try:
        shared = json.loads(run)
        return [Record(path=str(f), data=None, **shared, **json.loads(text)) for text in cases]
    except (ValueError, TypeError) as e:  # a row no version of this module wrote
        raise sqlite3.DatabaseError(f"bad row for {key}: {e}") from None


def _store(con: sqlite3.Connection, secret: bytes, key: str, stamp: tuple, me: str, f: Path,
           item: Item):
    if isinstance(item, RunError):
        error, run, cases = str(item).removeprefix(str(f)), None, []
    else:
        error = None
        run = json.dumps({k: getattr(item[0], k) for k in RUN_FIELDS} if item else {})
        cases = [json.dumps({k: getattr(r, k) for k in CASE_FIELDS}) for r in item]
    mac = _mac(secret, key, stamp, me, error, run, cases)
    con.execute("BEGIN IMMEDIATE")  # a file's rows replaced whole, or not at all
    try:
        con.execute("DELETE FROM cases WHERE path = ?", (key,))
        con.execute("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (key, *stamp, me, error, run, mac))
        con.executemany("INSERT INTO cases VALUES (?, ?, ?)",
                        [(key, pos, text) for pos, text in enumerate(cases)])
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def _prune(con: sqlite3.Connection, folders, found: set):
    """Drop the rows of files that were under `folders` and are gone, so the cache does not only
    grow."""
    gone = []
    for folder in folders:
        prefix = str(Path(folder).resolve()).rstrip(os.sep) + os.sep
        # every path that starts with prefix sorts between it and prefix with its last character + 1
        upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        gone += [p for (p,) in con.execute("SELECT path FROM files WHERE path >= ? AND path < ?",
                                           (prefix, upper))
                 if p not in found]
    if gone:
        con.execute("BEGIN IMMEDIATE")
        con.executemany("DELETE FROM files WHERE path = ?", [(p,) for p in gone])
        con.executemany("DELETE FROM cases WHERE path = ?", [(p,) for p in gone])
        con.execute("COMMIT")
