"""The test servers are real: PostgreSQL 16 and Redis on 127.0.0.1, one fresh database per test."""

from __future__ import annotations

import redis
import sqlalchemy as sa


def test_postgres_url_is_a_fresh_postgres_16_database_on_localhost(postgres_url):
    assert "@127.0.0.1:" in postgres_url
    engine = sa.create_engine(postgres_url)
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SHOW server_version").scalar().startswith("16.")
            tables = conn.exec_driver_sql("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'").scalar()
            assert tables == 0
    finally:
        engine.dispose()


def test_redis_url_is_an_empty_redis_on_localhost(redis_url):
    client = redis.Redis.from_url(redis_url)
    assert client.info("server")["redis_version"].startswith("6.")
    client.set("k", "v")
    assert client.dbsize() == 1
