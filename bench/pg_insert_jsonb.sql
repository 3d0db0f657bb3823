-- pg_insert_jsonb.sql: pgbench script, one durable single-row INSERT of the 200-byte record of
-- bench/wrk/post_single.lua into a jsonb column per transaction.
-- Table: CREATE TABLE events (id bigserial PRIMARY KEY, body jsonb NOT NULL);
-- Run:   pgbench -n -M prepared -c 50 -j 2 -T 20 -f bench/pg_insert_jsonb.sql
-- pgbench reads ":name" as a variable: "ok": true keeps its space (":true" would be one); ":123"
-- and ":"..." are not variables. The space is the only byte that differs from the HTTP body.
INSERT INTO events (body) VALUES ('{"agent_id":"bench","payload":{"ts":"2026-11-21T04:35:00.123Z","level":"info","user_id":123456789,"event":"page_view","path":"/products/widget-7","session":"a1b2c3d4e5f6a7b8","lat_ms":12.5,"ok": true}}');
