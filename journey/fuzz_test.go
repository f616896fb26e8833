package journey

import (
	"testing"
)

// FuzzParseJourney: any journey document parses and validates to a journey or an error naming
// the step and field, never a panic; a valid journey can be walked (dry run) within its step
// bound. The corpus is in testdata/fuzz/FuzzParseJourney.
func FuzzParseJourney(f *testing.F) {
	for _, s := range []string{
		`{"id":"j","templates":{"t":{"body":"hi {{.item_id}}","defaults":{"item_id":"x"}}},"steps":[{"id":"s","send":{"channel":"push","template":"t","fallback":"sms"}}]}`,
		`{"id":"j","templates":{"t":{"body":"hi"}},"steps":[{"id":"a","send":{"channel":"push","template":"t"}},{"id":"w","wait_for":{"events":["push_open"],"timeout":"24h","then":"end"}},{"id":"b","send":{"channel":"sms","template":"t"}},{"id":"g","goal":{"events":["order_paid"]}}]}`,
		`{"id":"j","templates":{"t":{"body":"x"}},"steps":[{"id":"br","branch":{"cases":[{"when":"profile.attrs.tier == 'gold'","next":"s"}],"else":"end"}},{"id":"s","send":{"channel":"push","template":"t"}}]}`,
		`{"id":"j","templates":{"t":{"body":"x"}},"steps":[{"id":"sp","split":{"paths":[{"name":"a","weight":50,"next":"s"},{"name":"b","weight":50,"next":"end"}],"holdout":10}},{"id":"s","send":{"channel":"push","template":"t"}}]}`,
		`{"id":"j","steps":[{"id":"w","wait":{"until":"09:00"}},{"id":"x","exit":{"reason":"done"}}]}`,
		`{"id":"j","steps":[{"id":"a","wait":{"for":"1h"},"next":"a"}]}`, `{"id":"j","steps":[]}`, `{`,
	} {
		f.Add([]byte(s), "ann", "push_open")
	}
	cat := Catalog{Channels: []string{"push", "sms", "webhook"}, Chains: []string{"default"}}
	f.Fuzz(func(t *testing.T, b []byte, user, response string) {
		j, err := Parse(b)
		if err != nil || Validate(j, cat) != nil {
			return
		}
		w, err := WalkPath(j, WalkInput{UserID: user, Match: map[string]any{"item_id": "i1"},
			Responses: []WalkResponse{{Type: response}}, MaxSteps: 50})
		if err == nil && w.Status == "" {
			t.Fatalf("a walk without an error has no status: %+v", w)
		}
		if len(w.Steps) > 50 {
			t.Fatalf("walked %d steps, bound 50", len(w.Steps))
		}
	})
}

// FuzzRender: any template text and field value render or fail with an error, never a panic, and
// the output stays within the rendering bound. The corpus is in testdata/fuzz/FuzzRender.
func FuzzRender(f *testing.F) {
	for _, s := range []string{"Hi {{.name}}", "{{.item_id}} is back", "{{if .x}}a{{else}}b{{end}}", "{{range .list}}{{.}}{{end}}",
		"{{.missing}}", "{{", "{{printf \"%v\" .name}}", "{{template \"x\"}}", "{{range .list}}{{range $.list}}{{$.name}}{{end}}{{end}}"} {
		f.Add(s, "de", "Dana")
	}
	f.Fuzz(func(t *testing.T, text, locale, value string) {
		tp := Template{Title: "t", Body: text, Defaults: map[string]string{"name": "there"},
			Locales: map[string]Text{"de": {Body: text + "!"}}}
		list := make([]any, 200)
		for i := range list {
			list[i] = value
		}
		_, body, err := tp.Render(locale, map[string]any{"name": value, "item_id": value, "list": list})
		if err == nil && len(body) > MaxRendered {
			t.Fatalf("rendered %d bytes, bound %d", len(body), MaxRendered)
		}
	})
}
