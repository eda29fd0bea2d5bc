//go:build !unix

package eval

import "time"

// cpuTime is unknown here: the hybrid plan reports wall time only.
func cpuTime() (time.Duration, bool) { return 0, false }
