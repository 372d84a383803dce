"""Where vectors and rows are kept: SQL metadata (SQLAlchemy) and FAISS vectors."""
