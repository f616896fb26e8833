// Package console is the read-only web console growth teams look at: journeys drawn as graphs
// with what happened at each step, funnels as bar charts, rules with their matches per hour, and
// one user's story. `omega api` serves it under /console/ on the API's port.
//
// The console is a client of the API and nothing else: each page calls the API's services
// in-process with the visitor's own key (kept in an HttpOnly session cookie after a login form),
// so every figure shown is what the API returns for that key, and the API's key, scope and rate
// checks apply unchanged. Pages are html/template with SVG drawn server-side; no script runs.
package console
