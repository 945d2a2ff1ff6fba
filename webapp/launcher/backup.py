"""Back up and restore what a local deployment holds: one archive in, one archive out.

A local deployment (no `MONGO_URL`, no `QDRANT_URL`, no `DATABASE_URL`) keeps its data in
three folders under VAR_DIR, and nowhere else:

- `mongo/<app>/`: montydb's embedded chat store, one folder per app. montydb writes
  `.monty.storage` and `monty.storage.cfg` (which engine, which options) and one SQLite
  file per collection, `<database>/<collection>.collection`; beside them the app's
  messages, `messages.sqlite3` (webapp.store.message_log, SQLite in WAL mode).
- `retrieval/<app>.sqlite3`: the office app's search index (SQLite in WAL mode, held
  open by the running office app).
- `accounts/accounts.sqlite3`: accounts, API key digests and sessions (Django's ORM,
  SQLite in WAL mode, held open by both apps), and the setup token while no admin exists.

Logs, nginx's files, `run/`, `perf/`, `screenshots/` and `backups/` are not data.

This module is written by hand because the layout is the product's own: no general tool
knows which files under VAR_DIR are data. What it leans on is SQLite's online backup API
(`sqlite3.Connection.backup`), which copies a database that another process is writing
to as one consistent snapshot, so a backup can be taken while the apps run. Each file is
consistent on its own; a turn written during the backup may be in one collection's copy
and not yet in another's (montydb has no cross-file transactions to snapshot).

The archive is a .tar.gz whose first member, `manifest.json`, names the format, when it
was made, and every file with its size and sha256. A restore checks all of that before it
touches anything, refuses members that would land outside VAR_DIR, refuses while the stack
(or any process) has the data open, moves the current data aside to
`backups/before-restore-<time>/` (nothing is ever deleted), and only then moves the
archive's files into place.

With MongoDB or Qdrant (docker-compose) the data is not here: both commands refuse and
name the tools that back those up (`mongodump`/`mongorestore`, Qdrant's snapshot API).
"""

from __future__ import annotations

import configparser
import contextlib
import hashlib
import io
import json
import os
import shutil
import sqlite3
import sys
import tarfile
import tempfile
import xmlrpc.client
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import IO, Any

from supervisor.xmlrpc import SupervisorTransport

from webapp.config.env import EnvError, env_load

FORMAT = "personachat-backup"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
DATA_ROOTS = ("mongo", "retrieval", "accounts")  # the folders under VAR_DIR that hold data
BACKUPS_DIR = "backups"

_SQLITE_HEADER = b"SQLite format 3\x00"
# A SQLite database's side files: the online backup reads through them, and a restored
# database must never meet a stale one (a leftover WAL would be replayed into it).
_SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")
_CHUNK = 1 << 20


class BackupError(Exception):
    """A backup or restore was refused or failed; the message says why and what to do."""


@dataclass(frozen=True)
class ManifestFile:
    path: str  # relative to VAR_DIR, '/'-separated
    size: int
    sha256: str
    sqlite: bool


@dataclass(frozen=True)
class Manifest:
    created_at: str
    files: tuple[ManifestFile, ...]

    def to_json(self) -> bytes:
        body = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "created_at": self.created_at,
            "roots": list(DATA_ROOTS),
            "files": [{"path": f.path, "size": f.size, "sha256": f.sha256, "sqlite": f.sqlite} for f in self.files],
        }
        return json.dumps(body, indent=2).encode()


def _timestamp(now: datetime) -> str:
    return now.strftime("%Y%m%dT%H%M%SZ")


# --- which deployments this applies to --------------------------------------------------


def _embedded_only(environ: Mapping[str, str] | None, command: str) -> None:
    """Refuse when the data lives in MongoDB or Qdrant rather than under VAR_DIR."""
    try:
        env = env_load(os.environ if environ is None else environ)
    except EnvError as exc:
        raise BackupError(str(exc)) from exc
    external = [name for name, value in (("MONGO_URL", env.mongo_url), ("QDRANT_URL", env.qdrant_url)) if value]
    if external:
        raise BackupError(
            f"{' and '.join(external)} {'is' if len(external) == 1 else 'are'} set: the data lives in MongoDB/Qdrant, "
            f"not under VAR_DIR, so `{command}` has nothing to do. Use `mongodump --archive --gzip` / "
            "`mongorestore --archive --gzip --drop` for MongoDB and Qdrant's snapshot API "
            "(POST /collections/{name}/snapshots, PUT /collections/{name}/snapshots/recover); see README, "
            "'Backup and restore'"
        )


# --- backup -----------------------------------------------------------------------------


def _is_sqlite(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(len(_SQLITE_HEADER)) == _SQLITE_HEADER


def _data_files(var_dir: Path) -> list[Path]:
    """Every data file under VAR_DIR's data folders, SQLite side files left out, in a fixed order."""
    found: list[Path] = []
    for root in DATA_ROOTS:
        folder = var_dir / root
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob("*")):
            if path.is_symlink() or not path.is_file() or path.name.endswith(_SQLITE_SIDE_FILES):
                continue
            found.append(path)
    return found


def _sqlite_copy(*, source: Path, dest: Path) -> None:
    """A consistent copy of a database that the apps may be writing to (SQLite's online backup).

    The backup holds a read transaction for the whole copy; a writer holding the file's
    lock makes it wait and retry (Python's `backup` does that on SQLITE_BUSY).
    """
    src = sqlite3.connect(source, timeout=30)
    try:
        dst = sqlite3.connect(dest)
        try:
            src.backup(dst)
        finally:
            dst.close()
    finally:
        src.close()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _unique(path: Path) -> Path:
    """`path`, or `path` with -2, -3, ... before its suffixes when it is taken."""
    if not path.exists():
        return path
    name = path.name
    stem, dot, suffixes = name.partition(".")
    for n in range(2, 1000):
        candidate = path.with_name(f"{stem}-{n}{dot}{suffixes}")
        if not candidate.exists():
            return candidate
    raise BackupError(f"{path} and 998 numbered variants of it exist already")


def _tar_member(name: str, *, size: int, mtime: float) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = int(mtime)
    info.mode = 0o600
    return info


def backup_create(*, var_dir: Path, out: Path | None = None, environ: Mapping[str, str] | None = None) -> Path:
    """Write an archive of everything the deployment at `var_dir` holds; return its path.

    Safe while the stack runs. `out` defaults to
    `<var_dir>/backups/personachat-<UTC yyyymmddThhmmssZ>.tar.gz`. The archive is written
    under a temporary name and renamed when complete, so a crash never leaves a truncated
    archive under the final name; it is readable by its owner only (it holds every chat).
    `environ` (default: the process environment) is checked for MONGO_URL/QDRANT_URL.
    """
    _embedded_only(environ, "backup")
    var_dir = var_dir.resolve()
    files = _data_files(var_dir)
    if not files:
        raise BackupError(
            f"nothing to back up: no {' or '.join(r + '/' for r in DATA_ROOTS)} under {var_dir} (is VAR_DIR right?)"
        )
    now = datetime.now(UTC)
    if out is None:
        out = _unique(var_dir / BACKUPS_DIR / f"personachat-{_timestamp(now)}.tar.gz")
    elif out.exists():
        raise BackupError(f"{out} exists already; choose another --out")
    out = out.resolve()
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=out.parent, prefix=".personachat-backup-") as staging_name:
            staging = Path(staging_name)
            entries: list[ManifestFile] = []
            for n, source in enumerate(files):
                staged = staging / f"{n}.data"
                sqlite = _is_sqlite(source)
                if sqlite:
                    _sqlite_copy(source=source, dest=staged)
                else:
                    shutil.copyfile(source, staged)
                rel = source.relative_to(var_dir).as_posix()
                entries.append(
                    ManifestFile(path=rel, size=staged.stat().st_size, sha256=_sha256(staged), sqlite=sqlite)
                )
            manifest = Manifest(created_at=now.isoformat(timespec="seconds"), files=tuple(entries))
            partial = staging / "archive.tar.gz"
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
                body = manifest.to_json()
                tar.addfile(_tar_member(MANIFEST_NAME, size=len(body), mtime=now.timestamp()), io.BytesIO(body))
                for n, entry in enumerate(entries):
                    with (staging / f"{n}.data").open("rb") as f:
                        tar.addfile(_tar_member(entry.path, size=entry.size, mtime=now.timestamp()), f)
                raw.flush()
                os.fsync(raw.fileno())
            os.replace(partial, out)
    except (OSError, sqlite3.Error) as exc:
        raise BackupError(f"backup of {var_dir} failed: {exc}") from exc
    return out


# --- restore: reading and checking the archive ------------------------------------------


def _safe_relative(name: str) -> PurePosixPath:
    """The member's path if it lands inside one of the data folders; refuse anything else."""
    path = PurePosixPath(name)
    if not name or "\\" in name or "\x00" in name or path.is_absolute():
        raise BackupError(f"refused: archive member {name!r} has an absolute or odd path")
    if ".." in path.parts:
        raise BackupError(f"refused: archive member {name!r} would land outside VAR_DIR ('..' in its path)")
    if path.as_posix() != name:  # './', '//' or a trailing '/': not what a backup writes
        raise BackupError(f"refused: archive member {name!r} is not a plain relative path")
    if len(path.parts) < 2 or path.parts[0] not in DATA_ROOTS:
        raise BackupError(f"refused: archive member {name!r} is not under {' or '.join(DATA_ROOTS)}/")
    return path


def _manifest_parse(raw: bytes) -> Manifest:
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BackupError(f"refused: {MANIFEST_NAME} is not valid JSON ({exc})") from exc
    if not isinstance(body, dict) or body.get("format") != FORMAT:
        raise BackupError(f"refused: not a personachat backup ({MANIFEST_NAME} does not say format {FORMAT!r})")
    version = body.get("format_version")
    if version != FORMAT_VERSION:
        raise BackupError(
            f"refused: backup format version {version!r}; this version of the service reads {FORMAT_VERSION}"
        )
    files: list[ManifestFile] = []
    raw_files = body.get("files")
    if not isinstance(raw_files, list):
        raise BackupError(f"refused: {MANIFEST_NAME} has no file list")
    for item in raw_files:
        if not (
            isinstance(item, dict)
            and isinstance(item.get("path"), str)
            and isinstance(item.get("size"), int)
            and isinstance(item.get("sha256"), str)
            and len(item["sha256"]) == 64
        ):
            raise BackupError(f"refused: malformed file entry in {MANIFEST_NAME}: {item!r}")
        _safe_relative(item["path"])
        files.append(
            ManifestFile(path=item["path"], size=item["size"], sha256=item["sha256"], sqlite=bool(item.get("sqlite")))
        )
    if len({f.path for f in files}) != len(files):
        raise BackupError(f"refused: {MANIFEST_NAME} names a file twice")
    return Manifest(created_at=str(body.get("created_at", "")), files=tuple(files))


@contextlib.contextmanager
def _archive_open(archive: Path) -> Iterator[tarfile.TarFile]:
    if not archive.is_file():
        raise BackupError(f"no such archive: {archive}")
    try:
        with tarfile.open(archive, mode="r:gz") as tar:
            yield tar
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise BackupError(f"refused: {archive} is damaged or truncated ({exc}); nothing was changed") from exc


def _copy_checked(source: IO[bytes], *, entry: ManifestFile, dest: IO[bytes] | None) -> None:
    """Stream a member (to `dest`, if given) and check its size and sha256 against the manifest."""
    digest, size = hashlib.sha256(), 0
    while chunk := source.read(_CHUNK):
        digest.update(chunk)
        size += len(chunk)
        if dest is not None:
            try:
                dest.write(chunk)
            except OSError as exc:
                raise BackupError(f"cannot write {entry.path} while unpacking: {exc}; nothing was changed") from exc
    if size != entry.size or digest.hexdigest() != entry.sha256:
        raise BackupError(
            f"refused: {entry.path} in the archive does not match its checksum in {MANIFEST_NAME} "
            "(the archive was changed or damaged); nothing was changed"
        )


def _archive_read(archive: Path, *, into: Path | None) -> Manifest:
    """Check the whole archive against its manifest; with `into`, also write its files there.

    Members are read with our own file writes at checked paths, never `tar.extract`.
    """
    with _archive_open(archive) as tar:
        members = tar.getmembers()
        if not members or members[0].name != MANIFEST_NAME or not members[0].isfile():
            raise BackupError(f"refused: {archive} does not start with {MANIFEST_NAME}; not a personachat backup")
        manifest_file = tar.extractfile(members[0])
        assert manifest_file is not None  # a regular file, checked above
        manifest = _manifest_parse(manifest_file.read())
        by_name: dict[str, tarfile.TarInfo] = {}
        for member in members[1:]:
            _safe_relative(member.name)
            if not member.isfile():
                raise BackupError(f"refused: archive member {member.name!r} is not a regular file (a link or device)")
            if member.name in by_name:
                raise BackupError(f"refused: archive member {member.name!r} appears twice")
            by_name[member.name] = member
        listed = {f.path for f in manifest.files}
        if missing := sorted(listed - by_name.keys()):
            shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
            raise BackupError(
                f"refused: {archive} is damaged or truncated: files its manifest lists are missing ({shown}); "
                "nothing was changed"
            )
        if extra := sorted(by_name.keys() - listed):
            raise BackupError(f"refused: {archive} holds files its manifest does not list: {', '.join(extra)}")
        for entry in manifest.files:
            source = tar.extractfile(by_name[entry.path])
            assert source is not None
            if into is None:
                _copy_checked(source, entry=entry, dest=None)
                continue
            dest = into / PurePosixPath(entry.path)
            if not dest.resolve().is_relative_to(into.resolve()):
                raise BackupError(f"refused: archive member {entry.path!r} would land outside VAR_DIR")
            try:
                dest.parent.mkdir(parents=True, exist_ok=True)
                written = dest.open("xb")
            except OSError as exc:
                raise BackupError(f"cannot write {dest}: {exc}; nothing was changed") from exc
            with written:
                _copy_checked(source, entry=entry, dest=written)
    return manifest


# --- restore: is anything using the data? -----------------------------------------------


def _supervisord_socket(var_dir: Path) -> tuple[Path, Path] | None:
    """The control socket named in the stack's supervisord.conf under `var_dir`, and the conf."""
    conf = var_dir / "run" / "supervisord.conf"
    if not conf.is_file():
        return None
    parser = configparser.RawConfigParser()
    try:
        parser.read(conf)
        raw = parser.get("unix_http_server", "file")
    except (configparser.Error, OSError):
        return None
    return Path(raw.replace("%%", "%")), conf  # the launcher doubles a literal % for supervisord


def _supervisord_answers(socket_path: Path) -> bool:
    """What `Stack._rpc_alive` asks: does a supervisord answer on this socket?"""
    transport = SupervisorTransport(None, None, f"unix://{socket_path}")
    try:
        xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport).supervisor.getState()
    except (OSError, xmlrpc.client.Error):
        return False
    return True


def _supervisord_pid(var_dir: Path) -> int | None:
    """The pid in the stack's pidfile if that process is alive and is a supervisord."""
    try:
        pid = int((var_dir / "run" / "supervisord.pid").read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if b"supervisord" in cmdline else None


def _holders(folders: list[Path]) -> dict[int, str]:
    """Processes other than this one with a file under `folders` open: pid -> command line.

    Reads /proc (Linux); elsewhere, and for other users' processes it cannot read, it finds nothing.
    """
    proc = Path("/proc")
    if not proc.is_dir() or not folders:
        return {}
    prefixes = tuple(str(folder.resolve()) + os.sep for folder in folders)
    found: dict[int, str] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            targets = [os.readlink(fd) for fd in (entry / "fd").iterdir()]
        except OSError:
            continue
        if any(target.startswith(prefixes) for target in targets):
            try:
                cmdline = " ".join(
                    (entry / "cmdline").read_bytes().decode(errors="replace").replace("\x00", " ").split()
                )
            except OSError:
                cmdline = "?"
            found[int(entry.name)] = cmdline[:120]
    return found


def _refuse_if_in_use(var_dir: Path) -> None:
    found = _supervisord_socket(var_dir)
    if (found and _supervisord_answers(found[0])) or _supervisord_pid(var_dir):
        conf = var_dir / "run" / "supervisord.conf"
        raise BackupError(
            f"refused: the stack is running from {var_dir}; stop it first (Ctrl-C where `make run` runs, or "
            f"{sys.executable} -m supervisor.supervisorctl -c {conf} shutdown), then restore; nothing was changed"
        )
    holders = _holders([var_dir / root for root in DATA_ROOTS if (var_dir / root).is_dir()])
    if holders:
        who = "; ".join(f"pid {pid}: {cmd}" for pid, cmd in sorted(holders.items()))
        raise BackupError(f"refused: the data files are in use ({who}); stop them, then restore; nothing was changed")


# --- restore ----------------------------------------------------------------------------


def _move(source: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.rename(source, dest)  # same file system (both under VAR_DIR): atomic, nothing copied


def backup_restore(*, var_dir: Path, archive: Path, environ: Mapping[str, str] | None = None) -> Path | None:
    """Replace the deployment's data at `var_dir` with the archive's; return where the old data went.

    Precondition: the stack is stopped (refused otherwise). The archive is checked in full
    before anything changes. The current `mongo/`, `retrieval/` and `accounts/` folders are moved, whole
    (SQLite side files included), to `<var_dir>/backups/before-restore-<time>/`; the
    return value is that folder, or None when there was no data to move. If putting the
    archive's files in place fails half-way, what was moved is moved back.
    """
    _embedded_only(environ, "restore")
    var_dir, archive = var_dir.resolve(), archive.resolve()
    _refuse_if_in_use(var_dir)
    _archive_read(archive, into=None)  # check everything before writing anything

    now = datetime.now(UTC)
    backups = var_dir / BACKUPS_DIR
    try:
        backups.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=backups, prefix=f".restore-{_timestamp(now)}-"))
    except OSError as exc:
        raise BackupError(f"cannot write under {backups}: {exc}; nothing was changed") from exc
    try:
        _archive_read(archive, into=staging)  # checked again while written: the file may have changed since
    except BackupError:
        shutil.rmtree(staging, ignore_errors=True)  # our own half-written copy, never the user's data
        raise

    present = [root for root in DATA_ROOTS if (var_dir / root).exists()]
    aside = _unique(backups / f"before-restore-{_timestamp(now)}") if present else None
    moved: list[str] = []
    placed: list[str] = []
    try:
        for root in present:
            assert aside is not None
            _move(var_dir / root, aside / root)
            moved.append(root)
        for root in DATA_ROOTS:
            if (staging / root).exists():
                _move(staging / root, var_dir / root)
                placed.append(root)
    except OSError as exc:
        for root in placed:
            with contextlib.suppress(OSError):
                _move(var_dir / root, staging / root)
        for root in moved:
            assert aside is not None
            with contextlib.suppress(OSError):
                _move(aside / root, var_dir / root)
        raise BackupError(
            f"restore failed while moving files ({exc}); the previous data was moved back "
            f"(the archive's files are left in {staging})"
        ) from exc
    with contextlib.suppress(OSError):
        staging.rmdir()  # empty now
    return aside


def manifest_read(archive: Path) -> dict[str, Any]:
    """The manifest of an archive as JSON, checked against the archive's files (for tools and tests)."""
    manifest = _archive_read(archive, into=None)
    return json.loads(manifest.to_json())
