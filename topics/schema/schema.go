// Package schema embeds the JSON Schemas (draft 2020-12) of the input
// envelope and of each output envelope, so that tools can print or serve
// them.
package schema

import "embed"

// FS holds the schema files, named by the constants below. It is read-only
// and safe for concurrent use.
//
//go:embed *.schema.json
var FS embed.FS

// Schema file names in FS.
const (
	Envelope   = "envelope.schema.json"   // the input envelope (user.activity)
	Aggregated = "aggregated.schema.json" // user.activity.aggregated
	Milestone  = "milestone.schema.json"  // user.milestone.reached
	Anomaly    = "anomaly.schema.json"    // anomaly.detected
	Gap        = "gap.schema.json"        // user.activity.gaps
)

// Names returns the names of every schema file in FS.
func Names() []string {
	return []string{Envelope, Aggregated, Milestone, Anomaly, Gap}
}
