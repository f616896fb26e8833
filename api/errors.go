package api

import (
	"errors"
	"fmt"

	"connectrpc.com/connect"
	"go.temporal.io/api/serviceerror"
	"google.golang.org/genproto/googleapis/rpc/errdetails"

	"github.com/omegareach/omega/audit"
)

// invalid is an InvalidArgument error naming the field: in its message (field: reason) and in a
// google.rpc.BadRequest detail, the standard form clients read field violations from.
func invalid(field, format string, args ...any) error {
	return invalidAll([]*errdetails.BadRequest_FieldViolation{{Field: field, Description: fmt.Sprintf(format, args...)}}, 0)
}

// maxViolations bounds the field violations one error lists (a batch of 1,000 bad events would
// otherwise answer with a 100 KB error).
const maxViolations = 100

// invalidAll is an InvalidArgument error for every violation found (at least one; at most
// maxViolations listed, of total, 0 when all are): the message names the first and counts the
// others, the BadRequest detail lists them.
func invalidAll(vs []*errdetails.BadRequest_FieldViolation, total int) error {
	total = max(total, len(vs))
	if len(vs) > maxViolations {
		vs = vs[:maxViolations]
	}
	msg := vs[0].Field + ": " + vs[0].Description
	switch {
	case total > len(vs):
		msg += fmt.Sprintf(" (and %d more violations; the error's details list the first %d)", total-1, len(vs))
	case total > 1:
		msg += fmt.Sprintf(" (and %d more violations, listed in the error's details)", total-1)
	}
	err := connect.NewError(connect.CodeInvalidArgument, errors.New(msg))
	if d, derr := connect.NewErrorDetail(&errdetails.BadRequest{FieldViolations: vs}); derr == nil {
		err.AddDetail(d)
	}
	return err
}

// internal maps a backend failure to a connect error without leaking its detail to the caller;
// the detail goes to the log.
func (s *server) internal(what string, err error) error {
	var nf *serviceerror.NotFound
	switch {
	case errors.Is(err, audit.ErrNotFound), errors.As(err, &nf):
		return connect.NewError(connect.CodeNotFound, errors.New(what+": not found"))
	}
	s.log.Error(what, "err", err)
	return connect.NewError(connect.CodeUnavailable, errors.New(what+" failed; retry later"))
}
