package journey

import "time"

// MinOpensForBestHour is the least open history a best hour is read from: with fewer opens a
// wait until best_hour waits for its fallback.
const MinOpensForBestHour = 3

// BestHourLookback is how far back a best hour reads the user's opens.
const BestHourLookback = 90 * 24 * time.Hour

// BestHourOf is the hour of day (0-23, in loc) at which most of opens happened and how many did;
// -1 with fewer than MinOpensForBestHour opens. A tie goes to the hour whose latest open is the
// most recent (habits change), then to the earlier hour, so the answer depends on the opens alone.
func BestHourOf(opens []time.Time, loc *time.Location) (hour, count int) {
	if len(opens) < MinOpensForBestHour {
		return -1, 0
	}
	var n [24]int
	var last [24]time.Time
	for _, t := range opens {
		h := t.In(loc).Hour()
		n[h]++
		if t.After(last[h]) {
			last[h] = t
		}
	}
	hour = 0
	for h := 1; h < 24; h++ {
		if n[h] > n[hour] || (n[h] == n[hour] && last[h].After(last[hour])) {
			hour = h
		}
	}
	return hour, n[hour]
}
