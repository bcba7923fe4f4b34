// Package store keeps Statusphere's statuses and its Jetstream cursor in SQLite (the CGO-free
// modernc.org/sqlite driver, so the image builds with CGO_ENABLED=0).
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// Status is one xyz.statusphere.status record as the app shows it.
type Status struct {
	// URI is the record's at:// URI; it is the key, so storing the same record again (a
	// Jetstream replay, or the event for a status the app already stored optimistically) changes
	// nothing.
	URI       string
	AuthorDID string
	// Status is the emoji.
	Status string
	// CreatedAt is the record's createdAt, as written by its author.
	CreatedAt string
	// IndexedAt is when the app first saw this version of the record.
	IndexedAt time.Time
}

// Store is the SQLite database.
type Store struct {
	db *sql.DB
}

// schema is applied on every Open; each statement is idempotent.
var schema = []string{
	`CREATE TABLE IF NOT EXISTS status (
	uri        TEXT PRIMARY KEY,
	author_did TEXT NOT NULL,
	status     TEXT NOT NULL,
	created_at TEXT NOT NULL,
	indexed_at INTEGER NOT NULL -- unix microseconds
)`,
	`CREATE INDEX IF NOT EXISTS status_indexed_at ON status (indexed_at DESC)`,
	`CREATE INDEX IF NOT EXISTS status_author ON status (author_did, indexed_at DESC)`,
	`CREATE TABLE IF NOT EXISTS cursor (
	id      INTEGER PRIMARY KEY CHECK (id = 1),
	time_us INTEGER NOT NULL
)`,
}

// Open opens (creating if needed) the database file at path.
func Open(ctx context.Context, path string) (*Store, error) {
	if path == "" {
		return nil, errors.New("open store: no database path")
	}
	if strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("open store %q: the path must not contain '?' or '#'", path)
	}
	// WAL lets the web handlers read while the ingester writes; busy_timeout makes a writer wait
	// for another instead of failing; immediate transactions take the write lock up front.
	dsn := "file:" + path + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_txlock=immediate"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open store %q: %w", path, err)
	}
	for _, stmt := range schema {
		if _, err := db.ExecContext(ctx, stmt); err != nil {
			db.Close()
			return nil, fmt.Errorf("open store %q: create schema: %w", path, err)
		}
	}
	return &Store{db: db}, nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.db.PingContext(ctx); err != nil {
		return fmt.Errorf("ping store: %w", err)
	}
	return nil
}

// PutStatus inserts st, or updates the stored record with the same URI. Storing an unchanged
// record again keeps its original IndexedAt, so replays do not reorder the list.
func (s *Store) PutStatus(ctx context.Context, st Status) error {
	_, err := s.db.ExecContext(ctx, `
		INSERT INTO status (uri, author_did, status, created_at, indexed_at)
		VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (uri) DO UPDATE SET
			indexed_at = CASE
				WHEN status.status = excluded.status AND status.created_at = excluded.created_at
				THEN status.indexed_at ELSE excluded.indexed_at END,
			status = excluded.status,
			created_at = excluded.created_at`,
		st.URI, st.AuthorDID, st.Status, st.CreatedAt, st.IndexedAt.UnixMicro())
	if err != nil {
		return fmt.Errorf("store status %s: %w", st.URI, err)
	}
	return nil
}

// DeleteStatus removes the record with uri; deleting a record that is not stored is no error.
func (s *Store) DeleteStatus(ctx context.Context, uri string) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM status WHERE uri = ?`, uri); err != nil {
		return fmt.Errorf("delete status %s: %w", uri, err)
	}
	return nil
}

// LatestStatuses returns the limit most recently indexed statuses, newest first.
func (s *Store) LatestStatuses(ctx context.Context, limit int) ([]Status, error) {
	rows, err := s.db.QueryContext(ctx, `
		SELECT uri, author_did, status, created_at, indexed_at FROM status
		ORDER BY indexed_at DESC, uri DESC LIMIT ?`, limit)
	if err != nil {
		return nil, fmt.Errorf("list statuses: %w", err)
	}
	defer rows.Close()
	var out []Status
	for rows.Next() {
		st, err := scan(rows)
		if err != nil {
			return nil, fmt.Errorf("list statuses: %w", err)
		}
		out = append(out, st)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list statuses: %w", err)
	}
	return out, nil
}

// LatestStatusBy returns the most recently indexed status of did; ok is false when there is
// none.
func (s *Store) LatestStatusBy(ctx context.Context, did string) (st Status, ok bool, err error) {
	row := s.db.QueryRowContext(ctx, `
		SELECT uri, author_did, status, created_at, indexed_at FROM status
		WHERE author_did = ? ORDER BY indexed_at DESC, uri DESC LIMIT 1`, did)
	st, err = scan(row)
	if errors.Is(err, sql.ErrNoRows) {
		return Status{}, false, nil
	}
	if err != nil {
		return Status{}, false, fmt.Errorf("status of %s: %w", did, err)
	}
	return st, true, nil
}

func scan(row interface{ Scan(...any) error }) (Status, error) {
	var st Status
	var indexed int64
	if err := row.Scan(&st.URI, &st.AuthorDID, &st.Status, &st.CreatedAt, &indexed); err != nil {
		return Status{}, err
	}
	st.IndexedAt = time.UnixMicro(indexed)
	return st, nil
}

// Cursor returns the saved Jetstream cursor (a time_us); ok is false before the first save.
func (s *Store) Cursor(ctx context.Context) (timeUS int64, ok bool, err error) {
	err = s.db.QueryRowContext(ctx, `SELECT time_us FROM cursor WHERE id = 1`).Scan(&timeUS)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("load cursor: %w", err)
	}
	return timeUS, true, nil
}

// SaveCursor saves the Jetstream cursor.
func (s *Store) SaveCursor(ctx context.Context, timeUS int64) error {
	_, err := s.db.ExecContext(ctx, `
		INSERT INTO cursor (id, time_us) VALUES (1, ?)
		ON CONFLICT (id) DO UPDATE SET time_us = excluded.time_us`, timeUS)
	if err != nil {
		return fmt.Errorf("save cursor %d: %w", timeUS, err)
	}
	return nil
}
