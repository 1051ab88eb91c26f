package topics

import "fmt"

// MinVersion is the oldest input schema version this build reads. Versions
// MinVersion..CurrentVersion are known; any other is rejected with
// ReasonUnknownVersion.
const MinVersion = 1

// Schema versions of the input envelope:
//
//   - 1: data.userId is optional.
//   - 2: data.userId is required (the decoder rejects a version 2 event
//     without it). Upcasting from 1 fills it from the aggregate ID.

// Upcaster upgrades an event from schema version From to From+1. Apply
// returns the upgraded event; it need not set Version.
type Upcaster struct {
	From  int
	Apply func(e Event) (Event, error)
}

// upcasters is the chain: upcasters[i] upgrades version MinVersion+i. It is
// never modified.
var upcasters = [...]Upcaster{
	{From: 1, Apply: upcastV1},
}

// upcastV1 upgrades a version 1 event to version 2: data.userId, optional
// in version 1, is always set in version 2, from the aggregate ID.
func upcastV1(e Event) (Event, error) {
	if e.Data.UserID == "" {
		e.Data.UserID = e.AggregateID
	}
	return e, nil
}

// Upcasters returns a copy of the upcaster chain, in order: element i
// upgrades version MinVersion+i to MinVersion+i+1.
func Upcasters() []Upcaster {
	return append([]Upcaster(nil), upcasters[:]...)
}

// Upcast upgrades e from e.Version to CurrentVersion, one version at a
// time. It fails with a *ValidationError (ReasonUnknownVersion) if
// e.Version is not a known version. Decode calls it; it is exported for
// tools that build Events themselves.
func Upcast(e *Event) error {
	if !knownVersion(int64(e.Version)) {
		return invalid("version", ReasonUnknownVersion, unknownVersionDetail(fmt.Sprint(e.Version)))
	}
	for e.Version < CurrentVersion {
		u := upcasters[e.Version-MinVersion]
		up, err := u.Apply(*e)
		if err != nil {
			return fmt.Errorf("upcast from version %d: %w", u.From, err)
		}
		*e = up
		e.Version = u.From + 1
	}
	return nil
}

// knownVersion reports whether v is a version this build reads.
func knownVersion(v int64) bool {
	return v >= MinVersion && v <= CurrentVersion
}

func unknownVersionDetail(v string) string {
	return fmt.Sprintf("%s is not a known version (%d to %d)", v, MinVersion, CurrentVersion)
}
