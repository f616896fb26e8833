package profile

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Writer stores profiles in batches and reads what is there (Store, Cached).
type Writer interface {
	UpsertMany(ctx context.Context, ps []Profile) error
	GetMany(ctx context.Context, userIDs []string) (map[string]Profile, error)
}

// LineError is one line an import refused, and why.
type LineError struct {
	Line   int    `json:"line"`
	UserID string `json:"user_id,omitempty"`
	Reason string `json:"reason"`
}

// Report is what an import did.
type Report struct {
	Lines    int `json:"lines"`
	Imported int `json:"imported"`
	// Refused lines are bad; Repeated lines named a user an earlier line of the batch did (the
	// later one was kept).
	Refused  int         `json:"refused"`
	Repeated int         `json:"repeated,omitempty"`
	Errors   []LineError `json:"errors,omitempty"`
}

// ImportBatch is how many profiles one write carries.
const ImportBatch = 500

// maxReportedErrors bounds the error report; the count of refused lines is always exact.
const maxReportedErrors = 1000

// Import reads profiles from JSONL (one whole Profile object per line: it replaces the stored
// one) or CSV (a header row: user_id, time_zone, locale, phone, email, and any other column as a
// string attribute: it updates those fields and keeps the rest, consent and push tokens included)
// and writes them in batches. A bad line is reported with its number and skipped; the rest goes
// in; a user twice in a file keeps the last line. progress, when set, is called after each batch.
func Import(ctx context.Context, w Writer, r io.Reader, format string, progress func(Report)) (Report, error) {
	var rep Report
	var batch []Profile
	at := map[string]int{} // user -> index in batch
	var merge func(p, stored Profile) Profile
	fail := func(line int, user, reason string) {
		rep.Refused++
		if len(rep.Errors) < maxReportedErrors {
			rep.Errors = append(rep.Errors, LineError{Line: line, UserID: user, Reason: reason})
		}
	}
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if merge != nil {
			ids := make([]string, len(batch))
			for i, p := range batch {
				ids[i] = p.UserID
			}
			stored, err := w.GetMany(ctx, ids)
			if err != nil {
				return err
			}
			for i, p := range batch {
				batch[i] = merge(p, stored[p.UserID])
			}
		}
		if err := w.UpsertMany(ctx, batch); err != nil {
			return err
		}
		rep.Imported += len(batch)
		batch = batch[:0]
		clear(at)
		if progress != nil {
			progress(rep)
		}
		return nil
	}
	add := func(line int, p Profile) error {
		if err := p.Validate(); err != nil {
			fail(line, p.UserID, err.Error())
			return nil
		}
		if i, dup := at[p.UserID]; dup {
			batch[i] = p // the later line wins; one row per user per statement
			rep.Repeated++
			return nil
		}
		at[p.UserID] = len(batch)
		batch = append(batch, p)
		if len(batch) >= ImportBatch {
			return flush()
		}
		return nil
	}
	var err error
	switch format {
	case "jsonl", "json":
		err = readJSONL(r, &rep, fail, add)
	case "csv":
		err = readCSV(r, &rep, fail, add, &merge)
	default:
		return rep, fmt.Errorf("format %q: want jsonl or csv", format)
	}
	if err == nil {
		err = flush()
	}
	return rep, err
}

func readJSONL(r io.Reader, rep *Report, fail func(int, string, string), add func(int, Profile) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		rep.Lines++
		var p Profile
		dec := json.NewDecoder(strings.NewReader(line))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&p); err != nil {
			fail(n, "", "not a profile object: "+err.Error())
			continue
		}
		if err := add(n, p); err != nil {
			return err
		}
	}
	return sc.Err()
}

func readCSV(r io.Reader, rep *Report, fail func(int, string, string), add func(int, Profile) error, merge *func(p, stored Profile) Profile) error {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	header, err := cr.Read()
	if err != nil {
		return fmt.Errorf("csv header: %w", err)
	}
	col := map[string]int{}
	for i, h := range header {
		col[strings.TrimSpace(h)] = i
	}
	if _, ok := col["user_id"]; !ok {
		return errors.New("csv header: a user_id column is required")
	}
	has := func(c string) bool { _, ok := col[c]; return ok }
	*merge = func(p, stored Profile) Profile {
		out := stored
		out.UserID = p.UserID
		if has("time_zone") {
			out.TimeZone = p.TimeZone
		}
		if has("locale") {
			out.Locale = p.Locale
		}
		if has("phone") {
			out.Addresses.Phone = p.Addresses.Phone
		}
		if has("email") {
			out.Addresses.Email = p.Addresses.Email
		}
		attrs := map[string]any{}
		for k, v := range stored.Attrs {
			attrs[k] = v
		}
		for k, v := range p.Attrs {
			attrs[k] = v
		}
		out.Attrs = attrs
		return out
	}
	for n := 2; ; n++ {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return nil
		}
		rep.Lines++
		if err != nil {
			fail(n, "", err.Error())
			continue
		}
		if len(rec) != len(header) {
			fail(n, "", fmt.Sprintf("%d fields, the header has %d", len(rec), len(header)))
			continue
		}
		p := Profile{Attrs: map[string]any{}}
		for name, i := range col {
			v := rec[i]
			switch name {
			case "user_id":
				p.UserID = v
			case "time_zone":
				p.TimeZone = v
			case "locale":
				p.Locale = v
			case "phone":
				p.Addresses.Phone = v
			case "email":
				p.Addresses.Email = v
			default:
				if v != "" {
					p.Attrs[name] = v
				}
			}
		}
		if err := add(n, p); err != nil {
			return err
		}
	}
}
