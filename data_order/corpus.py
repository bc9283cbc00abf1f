"""Corpus inputs → an ordered list of input files → documents (id, text).

Inputs are files, folders (recursive, sorted) or globs (sorted), in the order given.
Formats by suffix: `.jsonl`/`.json` (one JSON object per line, text in `text_field`, also
`.gz`/`.zst` compressed), `.parquet` (column `text_field`), anything else plain UTF-8 text,
one document per file. Empty documents are skipped (they would only add a lone EOS).

The special input ``"stdlib"`` is the embedded default corpus: every `.py` file of the
running Python's standard library (`sysconfig.get_paths()["stdlib"]`), one document per
file, in sorted POSIX relative-path order, without `site-packages`/`dist-packages` (not the
stdlib, differs per machine) and without the `test`, `tests` and `idle_test` folders
(70% of the bytes, and they hold deliberately mis-encoded files). Identical on every
machine with the same Python version; 3.11 gives 734 files, 12 MB, ~3.2M tokens at vocab
8192.
"""

from __future__ import annotations

import glob
import gzip
import hashlib
import io
import json
import os
import sysconfig
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from data_order.errors import DataConfigError, DataError

STDLIB = "stdlib"
STDLIB_EXCLUDED_DIRS = frozenset(
    {"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__"}
)
JSONL_SUFFIXES = (".jsonl", ".json", ".jsonl.gz", ".json.gz", ".jsonl.zst", ".json.zst")
PARQUET_SUFFIXES = (".parquet",)


@dataclass(frozen=True)
class InputFile:
    """One file of the corpus, in corpus order."""

    path: Path  #: where it is read from
    name: str  #: stable display name used in document ids (relative for stdlib)

    @property
    def kind(self) -> str:
        name = self.path.name.lower()
        if name.endswith(JSONL_SUFFIXES):
            return "jsonl"
        if name.endswith(PARQUET_SUFFIXES):
            return "parquet"
        return "text"

    def sha256(self) -> str:
        digest = hashlib.sha256()
        with open(self.path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()


@dataclass(frozen=True)
class Document:
    id: str  #: `<file name>` for text files, `<file name>:<line or row>` for JSONL/Parquet
    text: str


def stdlib_files() -> list[InputFile]:
    root = Path(sysconfig.get_paths()["stdlib"])
    files = []
    for folder, subdirs, names in os.walk(root):
        # Prune in place: walking site-packages would cost seconds and is excluded anyway.
        subdirs[:] = [d for d in subdirs if d not in STDLIB_EXCLUDED_DIRS]
        for name in names:
            path = Path(folder, name)
            if name.endswith(".py") and path.is_file():
                files.append(InputFile(path, f"stdlib/{path.relative_to(root).as_posix()}"))
    return sorted(files, key=lambda f: f.name)


def expand_inputs(inputs: list[str]) -> list[InputFile]:
    """Resolve `inputs` into files, in order; a missing input is an error, not a skip."""
    files: list[InputFile] = []
    for spec in inputs:
        if spec == STDLIB:
            files += stdlib_files()
            continue
        path = Path(spec)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
            files += [InputFile(p, p.relative_to(path).as_posix()) for p in found]
        elif path.is_file():
            files.append(InputFile(path, path.name))
        elif glob.has_magic(spec):
            matches = sorted(Path(p) for p in glob.glob(spec, recursive=True) if Path(p).is_file())
            if not matches:
                raise DataConfigError("inputs", spec, "the glob matches no file; check the pattern")
            files += [InputFile(p, p.name) for p in matches]
        else:
            raise DataConfigError(
                "inputs", spec, "no such file or folder; give files, folders, globs or 'stdlib'"
            )
    return files


def _decode(raw: bytes, where: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataError(
            f"{where}: not valid UTF-8 at byte {err.start} ({err.reason}); re-encode the file as UTF-8 "
            "or remove it from the inputs"
        ) from None


class _ZstdStream(io.RawIOBase):
    """A `.zst` file decompressed frame after frame. zstandard's own `stream_reader` ends
    quietly at a truncated frame (a half-downloaded file would read as fewer documents);
    this one raises `EOFError` there, as `gzip` does."""

    def __init__(self, path: Path):
        import zstandard  # lazily: only .zst inputs need it

        self._new_frame = zstandard.ZstdDecompressor().decompressobj
        self._file = open(path, "rb")  # noqa: SIM115 - closed in close()
        self._frame = None  # the decompressor of the frame being read, None between frames
        self._pending = b""  # compressed bytes after the end of the last frame
        self._out = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self._out:
            raw, self._pending = self._pending or self._file.read(1 << 20), b""
            if not raw:
                if self._frame is not None:
                    raise EOFError("the file ends inside a zstd frame (truncated)")
                return 0
            self._frame = self._frame or self._new_frame()
            self._out = self._frame.decompress(raw)
            if self._frame.eof:
                self._pending, self._frame = self._frame.unused_data, None
        n = min(len(buffer), len(self._out))
        buffer[:n], self._out = self._out[:n], self._out[n:]
        return n

    def close(self) -> None:
        self._file.close()
        super().close()


def _open_text_stream(path: Path) -> io.BufferedIOBase:
    name = path.name.lower()
    if name.endswith(".gz"):
        return gzip.open(path, "rb")
    if name.endswith(".zst"):
        return io.BufferedReader(_ZstdStream(path))
    return open(path, "rb")  # noqa: SIM115


def _corpus_id(value: object, where: str, id_field: str) -> str:
    """A document's own id (`id_field`): a string or an integer, written as given."""
    if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
        raise DataError(
            f"{where}: field {id_field!r} is {value!r}, not a document id (a non-empty string "
            "or an integer); set id_field to the key holding the id, or leave it unset"
        )
    return str(value)


def _jsonl_documents(file: InputFile, text_field: str, id_field: str | None) -> Iterator[Document]:
    with _open_text_stream(file.path) as raw:
        for number, line in enumerate(io.BufferedReader(raw), start=1):
            where = f"{file.path}:{number}"
            text_line = _decode(line, where).strip()
            if not text_line:
                continue
            try:
                record = json.loads(text_line)
            except json.JSONDecodeError as err:
                raise DataError(
                    f"{where}: not a JSON object ({err.msg}); fix or remove the line"
                ) from None
            if not isinstance(record, dict) or text_field not in record:
                raise DataConfigError(
                    "text_field",
                    text_field,
                    f"{where} has no such field; set text_field to the key holding the text",
                )
            text = record[text_field]
            if not isinstance(text, str):
                raise DataError(
                    f"{where}: field {text_field!r} is {type(text).__name__}, not a string"
                )
            if id_field is None:
                yield Document(f"{file.name}:{number}", text)
            elif id_field not in record:
                raise DataConfigError(
                    "id_field", id_field, f"{where} has no such field; set id_field to the key "
                    "holding each document's id, or leave it unset (ids are then FILE:LINE)",
                )  # fmt: skip
            else:
                yield Document(_corpus_id(record[id_field], where, id_field), text)


def _parquet_documents(
    file: InputFile, text_field: str, id_field: str | None
) -> Iterator[Document]:
    import pyarrow.parquet as pq  # lazily: only Parquet inputs need it

    table = pq.ParquetFile(file.path)
    if text_field not in table.schema_arrow.names:
        raise DataConfigError(
            "text_field",
            text_field,
            f"{file.path} has columns {table.schema_arrow.names}; set text_field to one of them",
        )
    if id_field is not None and id_field not in table.schema_arrow.names:
        raise DataConfigError(
            "id_field", id_field, f"{file.path} has columns {table.schema_arrow.names}; set "
            "id_field to the one holding each document's id, or leave it unset (ids: FILE:ROW)",
        )  # fmt: skip
    row = 0
    columns = [text_field] if id_field is None else [text_field, id_field]
    for batch in table.iter_batches(columns=columns):
        ids = batch.column(1).to_pylist() if id_field is not None else None
        for i, text in enumerate(batch.column(0).to_pylist()):
            if text is not None and not isinstance(text, str):
                raise DataError(
                    f"{file.path}: row {row} of column {text_field!r} is {type(text).__name__}, "
                    "not a string; set text_field to the text column"
                )
            if text is not None:
                where = f"{file.path}: row {row}"
                doc_id = (
                    f"{file.name}:{row}" if ids is None else _corpus_id(ids[i], where, id_field)
                )
                yield Document(doc_id, text)
            row += 1


def _unreadable_errors(file: InputFile) -> tuple[type[BaseException], ...]:
    """What the decompressors and Parquet reader raise on a damaged or truncated file."""
    errors: tuple[type[BaseException], ...] = (OSError, EOFError, zlib.error)
    name = file.path.name.lower()
    if name.endswith(".zst"):
        import zstandard

        errors += (zstandard.ZstdError,)
    if file.kind == "parquet":
        import pyarrow

        errors += (pyarrow.ArrowException,)
    return errors


def _what(file: InputFile) -> str:
    name = file.path.name.lower()
    compressed = "gzip" if name.endswith(".gz") else "zstd" if name.endswith(".zst") else None
    if file.kind == "parquet":
        return "Parquet file"
    return f"{compressed} file" if compressed else "file"


def read_documents(
    files: list[InputFile], text_field: str, id_field: str | None = None
) -> Iterator[Document]:
    """Documents of `files` in order, empty ones skipped. Ids: the file's name (text files),
    `id_field`'s value, else `FILE:LINE` / `FILE:ROW` (JSONL / Parquet). A damaged or truncated
    compressed or Parquet file is a `DataError` naming it (not the library's traceback)."""
    for file in files:
        if file.kind == "jsonl":
            docs = _jsonl_documents(file, text_field, id_field)
        elif file.kind == "parquet":
            docs = _parquet_documents(file, text_field, id_field)
        else:
            docs = iter([Document(file.name, _decode(file.path.read_bytes(), str(file.path)))])
        try:
            for doc in docs:
                if doc.text:
                    yield doc
        except _unreadable_errors(file) as err:
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise DataError(
                f"{file.path}: unreadable {_what(file)}, damaged or truncated ({reason}); "
                "re-download or re-create it, or remove it from the inputs"
            ) from None
