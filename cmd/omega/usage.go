package main

import (
	"fmt"
	"strings"

	"github.com/omegareach/omega/activities/channel"
	"github.com/omegareach/omega/activities/filter"
	"github.com/omegareach/omega/activities/plugin"
)

// usage is the help text: the commands and the process settings, then each channel and filter
// with the settings it declares (read from its spec, so a new plug-in documents itself).
func usage() string {
	var b strings.Builder
	b.WriteString(usageHead)
	b.WriteString("channels (worker; a journey's send names one):\n")
	for _, s := range channel.Builtin().Specs() {
		pluginUsage(&b, s.Name, s.Doc, s.Fields)
	}
	b.WriteString("filters (worker), run in chains:")
	for _, c := range filter.Chains {
		fmt.Fprintf(&b, " %s (%s)", c.Name, strings.Join(c.Filters, ", "))
	}
	b.WriteString("\n")
	for _, s := range filter.Builtin().Specs() {
		pluginUsage(&b, s.Name, s.Doc, s.Fields)
	}
	return b.String()
}

func pluginUsage(b *strings.Builder, name, doc string, fields []plugin.Field) {
	fmt.Fprintf(b, "  %-11s %s\n", name, doc)
	var fb strings.Builder
	plugin.Usage(&fb, fields)
	for _, line := range strings.SplitAfter(fb.String(), "\n") {
		if line != "" {
			b.WriteString("    " + line)
		}
	}
}
