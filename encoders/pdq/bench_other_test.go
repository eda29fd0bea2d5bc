//go:build !unix

package pdq

import "time"

// cpuTime is not measured here; the cpu-images/s metric is then left out.
func cpuTime() time.Duration { return 0 }
