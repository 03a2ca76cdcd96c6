"""`tf.train.Example` records of scalar fields, serialized a column at a time.

TFDS serializes a record by building its `tf.train.Example` in Python, one
value after another (`tfds.features.FeaturesDict.encode_example`, then
`ExampleSerializer`): about 0.6 ms of CPU a row for the 38 fields of a
click example, over 90 % of a `cabb_synthetic/default` build.
`serialize_rows` writes the same protocol-buffer bytes for a whole block of
rows with NumPy, from the fields' columns.

**What is written.** A record holds one `Feature` per field, each a list of
one value: an `Int64List` (integer and boolean fields, as int64), a
`FloatList` (float32) or a `BytesList` (strings as UTF-8). The fields'
map entries are in the order of their names, so the bytes are those of
`tf.train.Example.SerializeToString(deterministic=True)`. (Without
`deterministic`, the protobuf runtime writes a map in an order that changes
from one process to the next, so TFDS's own records of the same example
differ in byte order between builds; they parse to the same example.)

**Wire format** (protobuf encoding, tensorflow/core/example/example.proto
and feature.proto): `Example.features` is field 1, `Features.feature` a map
(field 1 of entries with key 1, value 2), `Feature` holds `bytes_list` (1),
`float_list` (2) or `int64_list` (3), and each list its values as field 1,
packed for numbers. Every length and integer is a base-128 varint; negative
int64 take ten bytes.
"""

from typing import Any, List, Mapping, Sequence, Tuple

import numpy as np
import pyarrow as pa
import tensorflow as tf

# Kinds of scalar fields, by the list their value is stored in.
INT, FLOAT, BYTES = "int", "float", "bytes"
# The tag (field 1..3, length-delimited) of each kind's list in a Feature.
_LIST_TAG = {BYTES: 0x0A, FLOAT: 0x12, INT: 0x1A}
# Field 1, length-delimited: Example.features, the map entries of
# Features.feature, an entry's key, and the values of every list.
_TAG_1 = 0x0A
# Field 2, length-delimited: a map entry's value.
_TAG_2 = 0x12

Fields = Sequence[Tuple[str, str]]


def field_kinds(features: Any) -> List[Tuple[str, str]]:
  """(name, kind) of each field of a features dict of scalars, by name.

  Args:
    features: a `tfds.features.FeaturesDict` (anything with
      `get_serialized_info()`) whose fields are all scalars.

  Returns:
    The fields sorted by name, each with `INT`, `FLOAT` or `BYTES`.

  Raises:
    ValueError: for a field that is not a scalar or of another dtype.
  """
  kinds = []
  for name, info in features.get_serialized_info().items():
    if info.shape:
      raise ValueError(f"field {name!r} is not a scalar: {info}.")
    dtype = tf.as_dtype(info.tf_dtype)
    if dtype.is_integer or dtype.is_bool:
      kind = INT
    elif dtype.is_floating:
      kind = FLOAT
    elif dtype == tf.string:
      kind = BYTES
    else:
      raise ValueError(f"field {name!r} has dtype {dtype}, which a "
                       "tf.train.Example cannot hold.")
    kinds.append((name, kind))
  return sorted(kinds, key=lambda field: field[0].encode("utf-8"))


def varint_size(values: np.ndarray) -> np.ndarray:
  """Bytes of the varint of each value (uint64), as int64: 1 to 10."""
  values = np.asarray(values, dtype=np.uint64)
  size = np.ones(values.shape, dtype=np.int64)
  for bits in range(7, 64, 7):
    size += values >= (np.uint64(1) << np.uint64(bits))
  return size


def _varint(value: int) -> bytes:
  """The varint of one non-negative Python int."""
  out = bytearray()
  while True:
    low = value & 0x7F
    value >>= 7
    if value:
      out.append(low | 0x80)
    else:
      out.append(low)
      return bytes(out)


class _Rows:
  """A buffer of variable-length rows filled piece by piece, all rows at once.

  Each call appends one piece to every row, at the row's cursor; the rows'
  lengths are known beforehand, and `records` checks they were all filled.
  Pieces equal in every row are gathered and written together.
  """

  def __init__(self, lengths: np.ndarray):
    self._ends = np.cumsum(lengths, dtype=np.int64)
    self._starts = self._ends - lengths
    self._buffer = np.zeros(int(self._ends[-1]) if len(lengths) else 0,
                            dtype=np.uint8)
    self._cursor = self._starts.copy()
    self._pending = bytearray()

  def constant(self, data: bytes) -> None:
    """Appends the same bytes to every row."""
    self._pending += data

  def _flush(self) -> None:
    """Writes the constant bytes appended since the last write."""
    for offset, byte in enumerate(self._pending):
      self._buffer[self._cursor + offset] = byte
    self._cursor += len(self._pending)
    self._pending = bytearray()

  def fixed(self, matrix: np.ndarray) -> None:
    """Appends row i of a [rows, width] uint8 matrix to row i."""
    self._flush()
    for offset in range(matrix.shape[1]):
      self._buffer[self._cursor + offset] = matrix[:, offset]
    self._cursor += matrix.shape[1]

  def varint(self, values: np.ndarray) -> None:
    """Appends the varint of each row's value (uint64)."""
    values = np.asarray(values, dtype=np.uint64)
    if not len(values):
      return
    if values.min() == values.max():
      self.constant(_varint(int(values[0])))
      return
    self._flush()
    if int(values.max()) < 0x80:
      self._buffer[self._cursor] = values.astype(np.uint8)
      self._cursor += 1
      return
    size = varint_size(values)
    width = int(size.max())
    shifts = np.arange(width, dtype=np.uint64) * np.uint64(7)
    groups = ((values[:, None] >> shifts) & np.uint64(0x7F)).astype(np.uint8)
    more = np.arange(width) < (size[:, None] - 1)
    groups[more] |= np.uint8(0x80)
    used = np.arange(width) < size[:, None]
    self._buffer[(self._cursor[:, None] + np.arange(width))[used]] = (
        groups[used])
    self._cursor += size

  def ragged(self, data: np.ndarray, offsets: np.ndarray) -> None:
    """Appends `data[offsets[i]:offsets[i + 1]]` to row i."""
    self._flush()
    lengths = np.diff(offsets)
    total = int(offsets[-1] - offsets[0])
    if total:
      shift = np.repeat(self._cursor - offsets[:-1], lengths)
      where = shift + np.arange(int(offsets[0]), int(offsets[-1]))
      self._buffer[where] = data[int(offsets[0]):int(offsets[-1])]
    self._cursor += lengths

  def records(self) -> List[bytes]:
    """The rows as bytes."""
    self._flush()
    if not np.array_equal(self._cursor, self._ends):
      raise AssertionError("rows were not filled to their computed length.")
    blob = self._buffer.tobytes()
    return [blob[start:end] for start, end in
            zip(self._starts.tolist(), self._ends.tolist())]


class _Column:
  """One field's values prepared for writing: the bytes of its `Feature`
  message (`feature_size` per row) and how to write them."""

  def __init__(self, name: str, kind: str, values: Any):
    self.name = name
    self.kind = kind
    self._key = name.encode("utf-8")
    if kind == INT:
      array = np.asarray(values)
      if array.dtype.kind not in "iub":
        raise ValueError(f"field {name!r} holds integers, not {array.dtype}.")
      # Negative values are their two's complement, as protobuf writes int64.
      self._ints = array.astype(np.int64).view(np.uint64)
      value_size = varint_size(self._ints)
      list_size = 1 + 1 + value_size  # tag, length (< 128), the varint
    elif kind == FLOAT:
      array = np.asarray(values)
      if array.dtype.kind not in "fiub":
        raise ValueError(f"field {name!r} holds numbers, not {array.dtype}.")
      self._floats = np.ascontiguousarray(array.astype("<f4")).view(
          np.uint8).reshape(len(array), 4)
      list_size = np.full(len(array), 1 + 1 + 4, dtype=np.int64)
    elif kind == BYTES:
      strings = pa.array(np.asarray(values, dtype=object),
                         type=pa.large_binary())
      if strings.null_count:
        raise ValueError(f"field {name!r} has missing values (None).")
      _, offsets, data = strings.buffers()
      self._offsets = np.frombuffer(offsets, dtype=np.int64)[
          strings.offset:strings.offset + len(strings) + 1]
      self._data = (np.frombuffer(data, dtype=np.uint8) if data is not None
                    else np.zeros(0, dtype=np.uint8))
      self._string_size = np.diff(self._offsets)
      list_size = 1 + varint_size(self._string_size) + self._string_size
    else:
      raise ValueError(f"field {name!r} has an unknown kind {kind!r}.")
    self._list_size = list_size
    self.feature_size = 1 + varint_size(list_size) + list_size
    key = _varint(len(self._key)) + self._key
    self._entry_size = 1 + len(key) + 1 + varint_size(
        self.feature_size) + self.feature_size
    self.size = 1 + varint_size(self._entry_size) + self._entry_size
    self._key_piece = bytes([_TAG_1]) + key + bytes([_TAG_2])

  def write(self, rows: _Rows) -> None:
    """Appends this field's map entry to every row."""
    rows.constant(bytes([_TAG_1]))
    rows.varint(self._entry_size)
    rows.constant(self._key_piece)
    rows.varint(self.feature_size)
    rows.constant(bytes([_LIST_TAG[self.kind]]))
    rows.varint(self._list_size)
    rows.constant(bytes([_TAG_1]))
    if self.kind == INT:
      rows.varint(varint_size(self._ints))
      rows.varint(self._ints)
    elif self.kind == FLOAT:
      rows.constant(bytes([4]))
      rows.fixed(self._floats)
    else:
      rows.varint(self._string_size)
      rows.ragged(self._data, self._offsets)


def serialize_rows(fields: Fields, columns: Mapping[str, Any]) -> List[bytes]:
  """The serialized `tf.train.Example` of each row of `columns`.

  Args:
    fields: (name, kind) of every field (`field_kinds`); the records hold
      them in this order (sorted by name: the deterministic serialization).
    columns: {name: one value per row}: integers or booleans for `INT`,
      numbers for `FLOAT` (stored as float32), `str` (as UTF-8) or `bytes`
      for `BYTES`.

  Returns:
    One `bytes` record per row, in row order.

  Raises:
    ValueError: if a column is missing or not a field, of another length, or
      holds values of another kind.
  """
  if not fields:
    raise ValueError("a record needs at least one field.")
  unknown = sorted(set(columns) - {name for name, _ in fields})
  if unknown:
    raise ValueError(f"columns {unknown} are not fields of the records.")
  prepared = []
  num_rows = None
  for name, kind in fields:
    if name not in columns:
      raise ValueError(f"no column for the field {name!r}.")
    column = _Column(name, kind, columns[name])
    if num_rows is None:
      num_rows = len(column.size)
    elif len(column.size) != num_rows:
      raise ValueError(f"field {name!r} has {len(column.size)} values for "
                       f"{num_rows} rows.")
    prepared.append(column)
  if not num_rows:
    return []
  features_size = np.sum([column.size for column in prepared], axis=0,
                         dtype=np.int64)
  rows = _Rows(1 + varint_size(features_size) + features_size)
  rows.constant(bytes([_TAG_1]))
  rows.varint(features_size)
  for column in prepared:
    column.write(rows)
  return rows.records()
