package audit

// AddToFunnel lets the tests build a funnel from rows as Store.Funnel does.
func AddToFunnel(f *Funnel, status, by, path string, n, sent, opened, converted int64) {
	f.addRow(status, by, path, n, sent, opened, converted)
}
