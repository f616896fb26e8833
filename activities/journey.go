package activities

import (
	"bytes"
	"fmt"
	"text/template"
)

// Journey is what a reach runs. This first cut is a single send; multi-step journeys as data
// replace it.
type Journey struct {
	ID       string
	Version  int
	Channel  string
	Template Template
}

// Template is a message's wording, rendered over the match's fields.
type Template struct {
	ID    string
	Title string
	Body  string
}

// Catalog holds the journeys the worker can route to.
type Catalog struct {
	journeys map[string]compiledJourney
}

type compiledJourney struct {
	Journey
	title, body *template.Template
}

// NewCatalog validates and compiles journeys; a template that does not parse is refused here, at
// load time, not at send time.
func NewCatalog(js ...Journey) (*Catalog, error) {
	c := &Catalog{journeys: map[string]compiledJourney{}}
	for _, j := range js {
		if j.ID == "" || j.Channel == "" || j.Template.ID == "" {
			return nil, fmt.Errorf("journey %q: id, channel and template id are required", j.ID)
		}
		if _, dup := c.journeys[j.ID]; dup {
			return nil, fmt.Errorf("journey %q defined twice", j.ID)
		}
		title, err := template.New("title").Option("missingkey=zero").Parse(j.Template.Title)
		if err != nil {
			return nil, fmt.Errorf("journey %q: template %q title: %w", j.ID, j.Template.ID, err)
		}
		body, err := template.New("body").Option("missingkey=zero").Parse(j.Template.Body)
		if err != nil {
			return nil, fmt.Errorf("journey %q: template %q body: %w", j.ID, j.Template.ID, err)
		}
		c.journeys[j.ID] = compiledJourney{Journey: j, title: title, body: body}
	}
	return c, nil
}

// DemoJourneys are the journeys `make run` and the end-to-end tests route the demo rules to.
func DemoJourneys() []Journey {
	return []Journey{
		{ID: "cart-reminder", Version: 1, Channel: "webhook", Template: Template{
			ID:    "cart_reminder_v1",
			Title: "Still thinking about it?",
			Body:  "The item {{.item_id}} is waiting in your cart.",
		}},
		{ID: "price-drop", Version: 1, Channel: "webhook", Template: Template{
			ID:    "price_drop_v1",
			Title: "A price dropped",
			Body:  "The item {{.item_id}} you favourited is cheaper now{{with .new_price}}: {{.}}{{end}}.",
		}},
		{ID: "chat-nudge", Version: 1, Channel: "webhook", Template: Template{
			ID:    "chat_nudge_v1",
			Title: "Questions about it?",
			Body:  "You looked at {{.item_id}} a few times: chat with the seller.",
		}},
	}
}

func render(t *template.Template, data map[string]any) (string, error) {
	var b bytes.Buffer
	if err := t.Execute(&b, data); err != nil {
		return "", err
	}
	return b.String(), nil
}

// Has reports whether the catalog holds journey id.
func (c *Catalog) Has(id string) bool {
	_, ok := c.journeys[id]
	return ok
}
