package api

import (
	"errors"
	"fmt"

	"connectrpc.com/connect"
	"go.temporal.io/api/serviceerror"

	"github.com/omegareach/omega/audit"
)

// invalid is an InvalidArgument error naming the field.
func invalid(field, format string, args ...any) error {
	return connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
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
