-- bench/programs/workload.sql: the sqlite3 workload of bench/run.
-- An in-memory database doing what an application's store does: bulk
-- inserts of text rows, indexes, aggregate and join queries, updates and
-- deletes that rewrite pages, and a VACUUM.  sqlite3 calls malloc for its
-- page cache, its parse trees and every row it materialises.
-- Run: sqlite3 -cmd ".parameter set @n 200000" :memory: < workload.sql
-- Checks: the final SELECT prints fixed numbers for a given @n.
CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT, email TEXT, score INTEGER, team INTEGER);
CREATE TABLE events(id INTEGER PRIMARY KEY, user INTEGER, kind TEXT, payload TEXT, t INTEGER);
WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < @n / 10)
INSERT INTO users SELECT i, 'user' || i, 'u' || i || '@example.org', (i * 7919) % 1000, i % 37 FROM c;
WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < @n)
INSERT INTO events SELECT i, 1 + (i * 104729) % (@n / 10),
  CASE i % 4 WHEN 0 THEN 'click' WHEN 1 THEN 'view' WHEN 2 THEN 'buy' ELSE 'share' END,
  printf('%.*c', 20 + (i * 31) % 200, 'x') || i, i * 13 FROM c;
CREATE INDEX events_user ON events(user);
CREATE INDEX events_kind_t ON events(kind, t);
CREATE TEMP TABLE agg AS
  SELECT u.team AS team, e.kind AS kind, count(*) AS n, sum(length(e.payload)) AS bytes
  FROM events e JOIN users u ON u.id = e.user GROUP BY u.team, e.kind;
UPDATE events SET payload = upper(payload) || '!' WHERE kind = 'buy';
DELETE FROM events WHERE id % 5 = 0;
UPDATE users SET score = (SELECT count(*) FROM events WHERE events.user = users.id);
SELECT group_concat(name, ',') FROM (SELECT name FROM users ORDER BY score DESC, id LIMIT 3);
VACUUM;
SELECT 'check:', (SELECT count(*) FROM events), (SELECT sum(score) FROM users),
       (SELECT sum(n) FROM agg), (SELECT sum(bytes) FROM agg),
       (SELECT count(*) FROM events WHERE payload LIKE 'X%!');
