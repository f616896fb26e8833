package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// jsonCodec is connect's JSON codec (protojson, unknown fields discarded, so clients and server
// need not share one schema version) with errors a caller can act on: the request by its proto
// name, its fields by theirs, as every other InvalidArgument names them (event_id, not eventId,
// and not the Go type *omegav1.IngestRequest).
type jsonCodec struct{ name string }

// jsonCodecs replace connect's own under both names it registers JSON by.
func jsonCodecs() []connect.HandlerOption {
	return []connect.HandlerOption{connect.WithCodec(jsonCodec{"json"}), connect.WithCodec(jsonCodec{"json; charset=utf-8"})}
}

func (c jsonCodec) Name() string { return c.name }

func (c jsonCodec) Marshal(m any) ([]byte, error) {
	pm, ok := m.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("%T is not a proto message", m)
	}
	return protojson.Marshal(pm)
}

// MarshalStable and IsBinary make it a stable codec, as connect's own (GET requests).
func (c jsonCodec) MarshalStable(m any) ([]byte, error) {
	b, err := c.Marshal(m)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	if err := json.Compact(&out, b); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

func (c jsonCodec) IsBinary() bool { return false }

func (c jsonCodec) Unmarshal(b []byte, m any) error {
	pm, ok := m.(proto.Message)
	if !ok {
		return fmt.Errorf("%T is not a proto message", m)
	}
	if len(b) == 0 {
		return errors.New("zero-length payload is not a valid JSON object")
	}
	err := protojson.UnmarshalOptions{DiscardUnknown: true}.Unmarshal(b, pm)
	if err == nil {
		return nil
	}
	d := pm.ProtoReflect().Descriptor()
	return fmt.Errorf("%s: %s", d.FullName(), readable(err.Error(), d))
}

var jsonField = regexp.MustCompile(`field ([A-Za-z0-9_]+)`)

// readable is a protojson error without its "proto:" prefix (which protobuf-go writes with a
// space or a no-break space), with fields by their proto names.
func readable(msg string, d protoreflect.MessageDescriptor) string {
	msg = strings.TrimPrefix(msg, "proto:")
	msg = strings.TrimLeft(msg, " \u00a0")
	names := map[string]string{}
	protoNames(d, names, map[protoreflect.FullName]bool{})
	return jsonField.ReplaceAllStringFunc(msg, func(s string) string {
		if n, ok := names[strings.TrimPrefix(s, "field ")]; ok {
			return "field " + n
		}
		return s
	})
}

// protoNames maps the JSON names of d's fields, and of the messages it holds, to their proto names.
func protoNames(d protoreflect.MessageDescriptor, out map[string]string, seen map[protoreflect.FullName]bool) {
	if seen[d.FullName()] {
		return
	}
	seen[d.FullName()] = true
	fs := d.Fields()
	for i := range fs.Len() {
		f := fs.Get(i)
		out[f.JSONName()] = string(f.Name())
		if m := f.Message(); m != nil {
			protoNames(m, out, seen)
		}
	}
}
