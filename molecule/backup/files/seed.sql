-- The backup scenario's stand-in tables (test-only): types whose text form could drift between a dump and a
-- restore (timestamps with time zones, floats, numeric, bytea, json, arrays, NULLs, non-ASCII text), a
-- sequence per table, a foreign key, and a pg_trgm index (an extension the restore must recreate).
\set ON_ERROR_STOP on
CREATE EXTENSION IF NOT EXISTS pg_trgm;
SET ROLE :"owner";
CREATE TABLE accounts (
  id bigserial PRIMARY KEY,
  username text NOT NULL UNIQUE,
  display_name text,
  note text,
  locked boolean NOT NULL DEFAULT false,
  created_at timestamptz NOT NULL,
  avatar bytea
);
CREATE TABLE statuses (
  id bigserial PRIMARY KEY,
  account_id bigint NOT NULL REFERENCES accounts (id),
  text text NOT NULL,
  language text,
  visibility smallint NOT NULL,
  sensitive boolean,
  score double precision,
  amount numeric(12, 4),
  tags text[],
  data jsonb,
  created_at timestamptz NOT NULL
);
CREATE INDEX statuses_text_trgm ON statuses USING gin (text gin_trgm_ops);
CREATE TABLE settings (var text PRIMARY KEY, value text);
INSERT INTO accounts (username, display_name, note, locked, created_at, avatar)
SELECT 'user' || g, 'Ünïcödé ' || g || ' 🐘', CASE WHEN g % 4 = 0 THEN NULL ELSE repeat('note ', g % 9) END,
       g % 5 = 0, timestamptz '2024-02-29 23:59:59.123456+05:30' + g * interval '17 hours',
       decode(md5(g::text), 'hex')
FROM generate_series(1, 60) AS g;
INSERT INTO statuses (account_id, text, language, visibility, sensitive, score, amount, tags, data, created_at)
SELECT 1 + g % 60, 'status ' || g || ' — ' || md5(g::text), (ARRAY['en', 'de', 'pt', NULL])[1 + g % 4], g % 4,
       CASE WHEN g % 3 = 0 THEN NULL ELSE g % 2 = 0 END, g / 7.0::float8, g * 1.2345,
       ARRAY['tag' || g % 10, 'ümlaut'], jsonb_build_object('n', g, 'half', g / 2.0, 'nested', jsonb_build_object('a', g)),
       timestamptz '2025-01-01 00:00:00+00' + g * interval '3 minutes 7.5 seconds'
FROM generate_series(1, 2500) AS g;
INSERT INTO settings VALUES ('site_title', 'Backup scenario'), ('empty', ''), ('null', NULL);
