package event_test

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/omegareach/omega/event"
)

// The demo catalogue is today's eight types and the delivery receipt, and it is the default.
func TestDemoCatalogue(t *testing.T) {
	c := event.Default()
	require.Equal(t, []string{"cart_add", "chat_started", "favorite", "message_delivered", "order_paid", "price_drop", "push_open", "unfavorite", "view"},
		c.Names(""))
	require.Equal(t, []string{"chat_started", "order_paid", "push_open"}, c.Names(event.UseResponse))
	require.Equal(t, []string{"chat_started", "order_paid", "push_open"}, c.Names(event.UseGoal))
	require.Equal(t, []string{"message_delivered"}, c.Names(event.UseReceipt))
	require.Len(t, c.Names(event.UseTrigger), 8)
	pd, ok := c.Lookup("price_drop")
	require.True(t, ok)
	require.Equal(t, event.ScopeItem, pd.Scope)
	var nilCat *event.Catalog
	require.True(t, nilCat.Routed("push_open"), "a nil catalogue is the default one")
	for _, ty := range event.DemoTypes() {
		require.Equal(t, 1, ty.Version, ty.Name)
	}
}

func TestTypeValidate(t *testing.T) {
	ok := func(f func(*event.Type)) event.Type {
		ty := event.Type{Name: "coupon_claimed", Uses: []string{event.UseTrigger}}
		f(&ty)
		return ty
	}
	receipt := func(attrs ...event.Attr) func(*event.Type) {
		return func(ty *event.Type) { ty.Uses, ty.Attrs = []string{event.UseReceipt}, attrs }
	}
	reachID := event.Attr{Name: event.AttrReachID, Type: event.AttrString, Required: true}
	tests := []struct {
		name      string
		typ       event.Type
		wantField string
		// newOnly: refused only as a type being written (ValidateNew); the catalogue still loads
		// one stored before the check.
		newOnly bool
	}{
		{name: "valid", typ: ok(func(*event.Type) {})},
		{name: "receipt naming its reach", typ: ok(receipt(reachID, event.Attr{Name: event.AttrIdempotencyKey}))},
		{name: "receipt without reach_id", typ: ok(receipt()), wantField: "attrs", newOnly: true},
		{name: "receipt with reach_id optional", typ: ok(receipt(event.Attr{Name: event.AttrReachID, Type: event.AttrString})),
			wantField: "attrs", newOnly: true},
		{name: "receipt with reach_id a number", typ: ok(receipt(event.Attr{Name: event.AttrReachID, Type: event.AttrNumber, Required: true})),
			wantField: "attrs", newOnly: true},
		{name: "valid with schema", typ: ok(func(ty *event.Type) {
			ty.Attrs = []event.Attr{{Name: "coupon_id", Type: event.AttrString, Required: true}, {Name: "meta"}}
		})},
		{name: "no name", typ: ok(func(ty *event.Type) { ty.Name = "" }), wantField: "name"},
		{name: "name not a token", typ: ok(func(ty *event.Type) { ty.Name = "Coupon-Claimed" }), wantField: "name"},
		{name: "no uses", typ: ok(func(ty *event.Type) { ty.Uses = nil }), wantField: "uses"},
		{name: "unknown use", typ: ok(func(ty *event.Type) { ty.Uses = []string{"trigger", "alarm"} }), wantField: "uses[1]"},
		{name: "use twice", typ: ok(func(ty *event.Type) { ty.Uses = []string{"trigger", "trigger"} }), wantField: "uses[1]"},
		{name: "unknown scope", typ: ok(func(ty *event.Type) { ty.Scope = "shop" }), wantField: "scope"},
		{name: "item-scoped response", typ: ok(func(ty *event.Type) { ty.Scope, ty.Uses = event.ScopeItem, []string{"response"} }), wantField: "uses"},
		{name: "attribute without a name", typ: ok(func(ty *event.Type) { ty.Attrs = []event.Attr{{Type: "string"}} }), wantField: "attrs[0].name"},
		{name: "attribute twice", typ: ok(func(ty *event.Type) { ty.Attrs = []event.Attr{{Name: "a"}, {Name: "a"}} }), wantField: "attrs[1].name"},
		{name: "unknown attribute type", typ: ok(func(ty *event.Type) { ty.Attrs = []event.Attr{{Name: "a", Type: "int"}} }), wantField: "attrs[0].type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.typ.ValidateNew()
			if tt.newOnly {
				require.NoError(t, tt.typ.Validate(), "stored before the check: still loaded")
			} else {
				require.Equal(t, err, tt.typ.Validate())
			}
			if tt.wantField == "" {
				require.NoError(t, err)
				return
			}
			var te *event.TypeError
			require.True(t, errors.As(err, &te), "want a *TypeError, got %v", err)
			require.Equal(t, tt.wantField, te.Field)
		})
	}
}

func TestCatalogCheck(t *testing.T) {
	c, err := event.NewCatalog(
		event.Type{Name: "coupon_claimed", Uses: []string{event.UseTrigger}, Attrs: []event.Attr{
			{Name: "coupon_id", Type: event.AttrString, Required: true}, {Name: "value", Type: event.AttrNumber},
			{Name: "vip", Type: event.AttrBool}, {Name: "tags", Type: event.AttrList}, {Name: "meta", Type: event.AttrObject}, {Name: "any"},
		}},
		event.Type{Name: "restocked", Scope: event.ScopeItem, Uses: []string{event.UseTrigger}},
		// A receipt stored before receipts had to declare reach_id: its events still need one.
		event.Type{Name: "sms_receipt", Uses: []string{event.UseReceipt}},
	)
	require.NoError(t, err)
	claim := func(attrs map[string]any) event.Event {
		return event.Event{EventID: "e1", UserID: "u1", Type: "coupon_claimed", Attrs: attrs}
	}
	tests := []struct {
		name      string
		ev        event.Event
		wantField string
	}{
		{name: "every type right", ev: claim(map[string]any{"coupon_id": "c", "value": 5.0, "vip": true, "tags": []any{"a"},
			"meta": map[string]any{"k": 1.0}, "any": 3.0, "undeclared": "kept"})},
		{name: "optional ones missing", ev: claim(map[string]any{"coupon_id": "c"})},
		{name: "required missing", ev: claim(nil), wantField: "attrs.coupon_id"},
		{name: "string wanted", ev: claim(map[string]any{"coupon_id": 7.0}), wantField: "attrs.coupon_id"},
		{name: "number wanted", ev: claim(map[string]any{"coupon_id": "c", "value": "5"}), wantField: "attrs.value"},
		{name: "bool wanted", ev: claim(map[string]any{"coupon_id": "c", "vip": "yes"}), wantField: "attrs.vip"},
		{name: "list wanted", ev: claim(map[string]any{"coupon_id": "c", "tags": "a"}), wantField: "attrs.tags"},
		{name: "object wanted", ev: claim(map[string]any{"coupon_id": "c", "meta": []any{}}), wantField: "attrs.meta"},
		{name: "undeclared type", ev: event.Event{EventID: "e1", UserID: "u1", Type: "view"}, wantField: "type"},
		{name: "user-scoped without user", ev: event.Event{EventID: "e1", ItemID: "i1", Type: "coupon_claimed",
			Attrs: map[string]any{"coupon_id": "c"}}, wantField: "user_id"},
		{name: "item-scoped without item", ev: event.Event{EventID: "e1", UserID: "u1", Type: "restocked"}, wantField: "item_id"},
		{name: "item-scoped", ev: event.Event{EventID: "e1", ItemID: "i1", Type: "restocked"}},
		{name: "receipt without its reach", ev: event.Event{EventID: "e1", UserID: "u1", Type: "sms_receipt"}, wantField: "attrs.reach_id"},
		{name: "receipt naming its reach", ev: event.Event{EventID: "e1", UserID: "u1", Type: "sms_receipt",
			Attrs: map[string]any{"reach_id": "r1"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := c.Check(&tt.ev)
			if tt.wantField == "" {
				require.NoError(t, err)
				return
			}
			var fe *event.FieldError
			require.True(t, errors.As(err, &fe), "want a *FieldError, got %v", err)
			require.Equal(t, tt.wantField, fe.Field)
		})
	}
}

// Stored types go over the default catalogue: a new one is added, one of the same name replaces
// the default's, a disabled one removes it.
func TestOverlay(t *testing.T) {
	c := event.Overlay(event.Default(), []event.Type{
		{Name: "coupon_redeemed", Uses: []string{event.UseResponse, event.UseGoal}},
		{Name: "view", Uses: []string{event.UseTrigger, event.UseResponse}},
		{Name: "chat_started", Uses: []string{event.UseTrigger}, Disabled: true},
		{Name: "Bad Name", Uses: []string{event.UseTrigger}},
	})
	require.True(t, c.Routed("coupon_redeemed"))
	require.True(t, c.Routed("view"))
	require.False(t, c.Has("chat_started"))
	require.False(t, c.Has("Bad Name"), "a type that does not validate is left out")
	require.True(t, c.Has("push_open"))
	require.True(t, event.Default().Has("chat_started"), "the default is not changed")

	_, err := event.NewCatalog(event.Type{Name: "a", Uses: []string{"trigger"}}, event.Type{Name: "a", Uses: []string{"goal"}})
	require.Error(t, err)
}

func TestParseType(t *testing.T) {
	ty, err := event.ParseType([]byte("name: coupon_claimed\nuses: [trigger]\nattrs:\n  - {name: coupon_id, type: string, required: true}\n"))
	require.NoError(t, err)
	require.Equal(t, event.Type{Name: "coupon_claimed", Uses: []string{"trigger"},
		Attrs: []event.Attr{{Name: "coupon_id", Type: "string", Required: true}}}, ty)
	_, err = event.ParseType([]byte("name: x\nuses: [trigger]\nschema: {}\n"))
	var te *event.TypeError
	require.True(t, errors.As(err, &te))
	require.Equal(t, "schema", te.Field)
	require.Equal(t, "x", te.Name)
}
