"""SQL schema (SQLAlchemy Core). Region ids are never reused: they are the FAISS ids.

Videos (schema version 2, added in place to older indexes by :mod:`segindex.store.migrate`):

* a video is one ``segindex_images`` row with ``media = "video"`` (``NULL`` or ``"image"`` is an
  image), its ``duration_s``, average ``fps`` and display ``rotation`` (degrees counter-clockwise,
  already applied to the stored width/height and masks); the same sha256 identity, re-link,
  failure recording, delete and replace as an image. ``status`` is ``"partial"`` while it is
  being ingested chunk by chunk, ``"indexed"`` once complete.
* every sampled frame's regions are ``segindex_regions`` rows (kinds ``segment`` and ``image``,
  the whole frame) with ``frame_index`` (0-based, presentation order), ``time_s``
  (pts x time_base) and, for segments, ``track_id``.
* a track is ALSO one ``segindex_regions`` row, ``kind = "track"``: its vector is the
  L2-normalised mean of its frames' vectors, its label the score-weighted vote, and its box,
  mask (RLE), area, ``frame_index`` and ``time_s`` those of its best frame (the frame vector
  closest to the track vector). So tracks live in the same FAISS file as everything else and
  check / repair / rebuild need nothing new.
* ``segindex_tracks`` has one row per track: its summary (label, label_id, score, start_s,
  end_s, n_frames), running totals to extend it, and ``best_id``, the region row of its best
  frame. Its ``id`` is the **stable track id** (what ``regions.track_id`` holds, for the frame
  rows and for the track row). ``region_id`` is the
  track's current ``kind = "track"`` region row: when a later chunk extends a track, that row is
  deleted and a new one inserted with a new id (region ids are never reused, so the FAISS
  mirror, readers' id sync and crash recovery see the new vector by ids alone) and
  ``region_id`` is repointed; the track id never changes.
* ``segindex_video_progress`` holds, for a video being ingested, the last committed sampled
  frame and the sampler and tracker state (JSON), written in the same transaction as the
  chunk's rows; it is deleted when the video completes.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

index_meta = Table(
    "segindex_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),  # JSON
)

images = Table(
    "segindex_images",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("path", Text, nullable=False, unique=True),
    Column("sha256", String(64), nullable=True, index=True),
    Column("width", Integer, nullable=True),
    Column("height", Integer, nullable=True),
    Column("status", String(16), nullable=False, index=True),  # "indexed" | "failed"
    Column("error", Text, nullable=True),
    Column("n_regions", Integer, nullable=False, default=0),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    # schema version 2 (videos); NULL on rows written before it
    Column("media", String(8), nullable=True),  # "image" | "video"; NULL: image
    Column("duration_s", Float, nullable=True),
    Column("fps", Float, nullable=True),  # the stream's average frame rate
    Column("rotation", Integer, nullable=True),  # display matrix, degrees counter-clockwise
    sqlite_autoincrement=True,
)

regions = Table(
    "segindex_regions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(
        "image_id",
        Integer,
        ForeignKey("segindex_images.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("kind", String(16), nullable=False, index=True),  # "segment" | "image"
    Column("label_id", Integer, nullable=False),
    # no index of its own: ix_segindex_regions_label_kind serves label lookups (its prefix)
    Column("label", String(128), nullable=False),
    Column("score", Float, nullable=False),
    Column("is_thing", Boolean, nullable=False),
    Column("x0", Float, nullable=False),
    Column("y0", Float, nullable=False),
    Column("x1", Float, nullable=False),
    Column("y1", Float, nullable=False),
    Column("area", Integer, nullable=False),
    Column("rle", Text, nullable=False),  # compressed COCO RLE counts; size = image height/width
    # schema version 3: the crop policy used (segindex_crops.id); the vector lives in the
    # vector segment files (segindex.store.vector_files), addressed by this row's id
    Column("crop_id", Integer, nullable=True),
    # schema version 2 (videos): NULL for image regions
    Column("frame_index", Integer, nullable=True),
    Column("time_s", Float, nullable=True),
    Column("track_id", Integer, nullable=True),  # segindex_tracks.id
    sqlite_autoincrement=True,
)

# Covers label filters (with the scope's kind) from the index alone, and label lookups by its
# prefix.
Index("ix_segindex_regions_label_kind", regions.c.label, regions.c.kind)
# Partial: only video regions have a track, so image regions cost this index nothing.
Index(
    "ix_segindex_regions_track_id",
    regions.c.track_id,
    sqlite_where=regions.c.track_id.is_not(None),
    postgresql_where=regions.c.track_id.is_not(None),
)

tracks = Table(
    "segindex_tracks",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),  # stable track id
    Column(
        "image_id",
        Integer,
        ForeignKey("segindex_images.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("region_id", Integer, nullable=True, unique=True),  # current kind="track" row
    Column("local_id", Integer, nullable=False),  # the tracker's id within the video
    Column("label_id", Integer, nullable=True),
    Column("label", String(128), nullable=True, index=True),
    Column("score", Float, nullable=True),
    Column("start_s", Float, nullable=True),
    Column("end_s", Float, nullable=True),
    Column("n_frames", Integer, nullable=False, default=0),
    # running totals (segindex.store.track_totals): the next chunk extends them, no re-read
    Column("vector_sum", LargeBinary, nullable=True),  # float64 little-endian, (D,)
    Column("votes", Text, nullable=True),  # JSON [[label, label_id, vote, score_sum, n], ...]
    Column("best_id", Integer, nullable=True),  # region id of the best frame so far
    sqlite_autoincrement=True,
)

video_progress = Table(
    "segindex_video_progress",
    metadata,
    Column(
        "image_id",
        Integer,
        ForeignKey("segindex_images.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("last_frame", Integer, nullable=False),  # last committed sampled frame index
    Column("state", Text, nullable=False),  # JSON: sampler and tracker state
)

crops = Table(
    "segindex_crops",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("policy", Text, nullable=False, unique=True),  # JSON of the CropPolicy, sorted keys
)

vector_files = Table(
    "segindex_vector_files",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False, unique=True),  # files <name>.ids / <name>.vec
    Column("dtype", String(16), nullable=False),  # float16 | float32 | int8
    Column("dim", Integer, nullable=False),
    Column("rows", BigInteger, nullable=False, default=0),  # committed rows
)

#: version of this schema, stored as the ``schema_version`` setting
SCHEMA_VERSION = 3

Index("ix_segindex_tracks_image_local", tracks.c.image_id, tracks.c.local_id, unique=True)
