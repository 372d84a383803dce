"""SQL schema (SQLAlchemy Core). Region ids are never reused: they are the FAISS ids."""

from __future__ import annotations

from sqlalchemy import (
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
    Column("label", String(128), nullable=False, index=True),
    Column("score", Float, nullable=False),
    Column("is_thing", Boolean, nullable=False),
    Column("x0", Float, nullable=False),
    Column("y0", Float, nullable=False),
    Column("x1", Float, nullable=False),
    Column("y1", Float, nullable=False),
    Column("area", Integer, nullable=False),
    Column("rle", Text, nullable=False),  # compressed COCO RLE counts; size = image height/width
    Column("crop", Text, nullable=False),  # JSON of the CropPolicy used
    # float32 little-endian bytes of the L2-normalised embedding: the durable copy from which the
    # FAISS index can always be rebuilt without re-running models.
    Column("vector", LargeBinary, nullable=False),
    sqlite_autoincrement=True,
)

# Covers label filters (with the scope's kind) from the index alone: region rows are large
# because they carry their vectors, so reading them to test a label is slow at scale.
Index("ix_segindex_regions_label_kind", regions.c.label, regions.c.kind)
