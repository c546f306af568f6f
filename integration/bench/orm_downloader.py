"""A baseline of `integration/bench/compare`: the "W&B → PostgreSQL downloader" the tutorials
teach — `wandb.Api()`, `run.scan_history()` for each run, and one SQLAlchemy ORM object per
history step (a declarative model: id, run_id, step, data JSONB), one Session per run, one commit
per run.

Usage: orm_downloader.py ENTITY/PROJECT DSN

DSN is a libpq key=value string (`host=/path/to/socket port=5432 user=u dbname=d`) or a
`postgresql://` URL; it is turned into a SQLAlchemy `postgresql+psycopg://` URL.

Prints one JSON object: rows, runs, seconds (wall time from the run listing to the last commit).

Postgres `jsonb` rejects NaN and ±Infinity, which W&B histories contain, so rows are sanitised
exactly as `sdk_pipeline.py` does (non-finite floats become "NaN", "Infinity", "-Infinity"); a
downloader that skipped this would fail on the first such row.
"""

import json
import os
import sys
import time
import urllib.parse

import wandb
from sqlalchemy import BigInteger, String, create_engine
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sdk_pipeline import sanitize  # noqa: E402


class Base(DeclarativeBase):
    pass


class HistoryRow(Base):
    __tablename__ = "wandb_history"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(String, index=True)
    step: Mapped[int] = mapped_column(BigInteger)
    data: Mapped[dict] = mapped_column(JSONB)


def sqlalchemy_url(dsn: str) -> str:
    """`postgresql+psycopg://` URL for a libpq key=value string or a postgresql:// URL."""
    if "://" in dsn:
        scheme, rest = dsn.split("://", 1)
        return "postgresql+psycopg://" + rest
    params = dict(part.split("=", 1) for part in dsn.split())
    dbname = params.pop("dbname", "postgres")
    return "postgresql+psycopg:///" + urllib.parse.quote(dbname) + "?" + urllib.parse.urlencode(params)


def main():
    path, dsn = sys.argv[1], sys.argv[2]
    started = time.time()
    engine = create_engine(sqlalchemy_url(dsn))
    Base.metadata.create_all(engine)
    api = wandb.Api(timeout=60)
    rows = 0
    runs = 0
    for run in api.runs(path):
        with Session(engine) as session:
            for row in run.scan_history():
                session.add(HistoryRow(run_id=run.id, step=row["_step"], data=sanitize(row)))
                rows += 1
            session.commit()
        runs += 1
    print(json.dumps({"rows": rows, "runs": runs, "seconds": time.time() - started}))


if __name__ == "__main__":
    main()
