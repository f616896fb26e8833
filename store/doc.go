// Package store owns Omega Reach's PostgreSQL: the schema (every table's migrations, embedded,
// run by Migrate or Open), the connection pool (Open), and the storage behind the small
// interfaces the API, the CEP stage and the plug-ins share: Lists (the blacklist and whitelist,
// durable in PostgreSQL with a hot copy in Redis), Inbox (the in-app channel's messages) and
// Tracker (the tracking records the CEP stage writes). Errors PostgreSQL gives for the rows
// themselves, not for an outage, are told apart by IsDataError.
//
// The packages that keep their own tables (audit, journey, cep's rules, eventtype, profile,
// apikey) take the pool from here; none of them migrates.
package store
